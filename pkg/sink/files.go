package sink

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
)

// FileWriter is implemented by sinks that write files, so two sinks (or
// one sink's IPv4 and IPv6 files) can be kept from writing the same one.
type FileWriter interface {
	// Files lists every file the sink may write, derived ones included.
	Files() []string
}

// CheckDistinctFiles refuses sinks that would write one file twice: the
// last writer would win and both would report success. Paths are compared
// as written to: absolute, the symlink a path is followed as a write
// follows it, and symlinks resolved in the part of the directory that
// exists.
func CheckDistinctFiles(sinks []Sink) error {
	type writer struct{ sink, file string }
	seen := map[string]writer{}
	for _, s := range sinks {
		fw, ok := s.(FileWriter)
		if !ok {
			continue
		}
		for _, f := range fw.Files() {
			real := realPath(f)
			if prev, dup := seen[real]; dup {
				if prev.sink == s.Name() {
					return fmt.Errorf("%s writes %s twice (as %s and %s); give each file its own path", s.Name(), real, prev.file, f)
				}
				return fmt.Errorf("%s and %s both write %s; give each sink its own file", prev.sink, s.Name(), real)
			}
			seen[real] = writer{sink: s.Name(), file: f}
		}
	}
	return nil
}

// realPath is the file a write to p changes: the symlink p is followed
// (ResolveFile), then the deepest existing ancestor of its directory is
// resolved. A path it cannot resolve is compared as written; the sink's
// own access fails later.
func realPath(p string) string {
	abs, err := filepath.Abs(p)
	if err != nil {
		abs = filepath.Clean(p)
	}
	if r, err := ResolveFile(abs); err == nil {
		abs = r
	}
	dir, rest := filepath.Dir(abs), filepath.Base(abs)
	for {
		real, err := filepath.EvalSymlinks(dir)
		if err == nil {
			return filepath.Join(real, rest)
		}
		parent := filepath.Dir(dir)
		if !errors.Is(err, fs.ErrNotExist) || parent == dir {
			return abs
		}
		dir, rest = parent, filepath.Join(filepath.Base(dir), rest)
	}
}
