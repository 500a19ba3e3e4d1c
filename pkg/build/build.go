// Package build holds what the release build stamps in with -ldflags -X.
package build

var (
	Version = "dev"
	Commit  = "none"
	Date    = "unknown"
)
