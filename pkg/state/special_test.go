package state

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pdsafelist/pdsafelist/pkg/testutil"
)

// A state file that is a named pipe is not waited on: Load refuses it at
// once as corrupt, naming its type, and setting it aside makes room for a
// regular file. A clock file that is one only loses last successes, and
// Save replaces it.
func TestSpecialStateFileIsSetAside(t *testing.T) {
	dir := t.TempDir()
	path := testutil.FIFO(t, filepath.Join(dir, FileName))
	var err error
	testutil.Within(t, 5*time.Second, "load", func() { _, err = Load(path) })
	var corrupt *CorruptError
	if !errors.As(err, &corrupt) || !strings.Contains(err.Error(), "is a named pipe, not a regular file") {
		t.Fatalf("load: %v, want a corrupt state naming the named pipe", err)
	}
	if err := corrupt.SetAside(t0); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(corrupt.MovedTo); err != nil || fi.Mode().Type() != os.ModeNamedPipe {
		t.Errorf("set aside as %s: %v %v", corrupt.MovedTo, fi, err)
	}

	f := New()
	f.Observe("events", seen(30*time.Second, "193.0.2.1/32"), nil, t0, Window{})
	clock := testutil.FIFO(t, filepath.Join(dir, ClockFileName))
	testutil.Within(t, 5*time.Second, "save", func() { err = f.Save(path) })
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, clock} {
		if fi, err := os.Lstat(p); err != nil || !fi.Mode().IsRegular() {
			t.Errorf("%s after save: %v %v", p, fi, err)
		}
	}
	if err := os.Remove(clock); err != nil {
		t.Fatal(err)
	}
	testutil.FIFO(t, clock)
	var got *File
	testutil.Within(t, 5*time.Second, "load beside a named pipe clock", func() { got, err = Load(path) })
	if err != nil || !got.Remembers("events") {
		t.Errorf("load with a named pipe clock: %v", err)
	}
}
