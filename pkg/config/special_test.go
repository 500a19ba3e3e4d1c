package config

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/pdsafelist/pdsafelist/pkg/testutil"
)

// A config that is a named pipe or a directory is refused at once with one
// line naming the path and its type; the pipe is never waited on.
func TestLoadSpecialFile(t *testing.T) {
	dir := t.TempDir()
	fifo := testutil.FIFO(t, filepath.Join(dir, "pdsafelist.yaml"))
	for path, want := range map[string]string{
		fifo: "config " + fifo + ": is a named pipe, not a regular file",
		dir:  "config " + dir + ": is a directory, not a regular file",
	} {
		for _, explicit := range []bool{true, false} {
			var err error
			testutil.Within(t, 5*time.Second, "load "+path, func() { _, err = Load(path, explicit) })
			if err == nil || err.Error() != want {
				t.Errorf("Load(%s, %v): %v, want %q", path, explicit, err, want)
			}
		}
	}
}
