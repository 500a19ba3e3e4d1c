package build

import (
	"runtime/debug"
	"testing"
)

func TestGet(t *testing.T) {
	info := func(version string, settings ...debug.BuildSetting) func() (*debug.BuildInfo, bool) {
		return func() (*debug.BuildInfo, bool) {
			return &debug.BuildInfo{Main: debug.Module{Version: version}, Settings: settings}, true
		}
	}
	// go install github.com/pdsafelist/pdsafelist/cmd/pdsafelist@v1.2.3
	if got := get("dev", "none", "unknown", info("v1.2.3")); got != (Info{"v1.2.3", "none", "unknown"}) {
		t.Errorf("go install: %+v", got)
	}
	// go build in a checkout: the VCS stamp, no module version.
	got := get("dev", "none", "unknown", info("(devel)", debug.BuildSetting{Key: "vcs.revision", Value: "abc123"}, debug.BuildSetting{Key: "vcs.time", Value: "2026-11-26T00:00:00Z"}))
	if got != (Info{"dev", "abc123", "2026-11-26T00:00:00Z"}) {
		t.Errorf("checkout: %+v", got)
	}
	// A release stamp wins over build info.
	if got := get("v2.0.0", "deadbeef", "2026-11-01", info("v1.2.3")); got != (Info{"v2.0.0", "deadbeef", "2026-11-01"}) {
		t.Errorf("release: %+v", got)
	}
}
