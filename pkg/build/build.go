// Package build holds what the release build stamps in with -ldflags -X,
// and falls back to the module's build info for a plain go install.
package build

import (
	"runtime/debug"
)

var (
	Version = "dev"
	Commit  = "none"
	Date    = "unknown"
)

// Info is what the binary knows about its own build.
type Info struct {
	Version, Commit, Date string
}

// Get returns the stamped values; without a stamp (go install ...@v1.2.3,
// go build in a checkout) it reads the module version and VCS settings the
// Go toolchain embeds.
func Get() Info {
	return get(Version, Commit, Date, debug.ReadBuildInfo)
}

func get(version, commit, date string, read func() (*debug.BuildInfo, bool)) Info {
	in := Info{Version: version, Commit: commit, Date: date}
	if version != "dev" {
		return in
	}
	bi, ok := read()
	if !ok {
		return in
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		in.Version = v
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			in.Commit = s.Value
		case "vcs.time":
			in.Date = s.Value
		}
	}
	return in
}
