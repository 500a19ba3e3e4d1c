package regularfile

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pdsafelist/pdsafelist/pkg/testutil"
)

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	regular := filepath.Join(dir, "list.txt")
	if err := os.WriteFile(regular, []byte("193.0.2.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.txt")
	if err := os.Symlink(regular, link); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{regular, link} {
		data, err := ReadFile(p)
		if err != nil || string(data) != "193.0.2.1\n" {
			t.Errorf("%s: %q %v", p, data, err)
		}
	}
	// procfs reports size 0 for files that hold text: read to the end.
	if data, err := ReadFile("/proc/self/status"); err != nil || !strings.Contains(string(data), "\nPid:") {
		t.Errorf("/proc/self/status: %d bytes, %v", len(data), err)
	}
	f, err := Open(regular)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if fl, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0); err != nil || fl&unix.O_ACCMODE != unix.O_RDONLY || fl&unix.O_NONBLOCK != 0 {
		t.Errorf("flags %o %v: want read-only, blocking", fl, err)
	}
	if _, err := ReadFile(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing: %v, want ErrNotExist", err)
	}
}

// Anything but a regular file is refused at once, with its type; a named
// pipe is not waited on.
func TestSpecialFilesAreRefused(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "s.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for path, want := range map[string]string{
		testutil.FIFO(t, filepath.Join(dir, "p")): "named pipe",
		dir:         "directory",
		sock:        "socket",
		"/dev/null": "character device",
		"/dev/zero": "character device",
	} {
		var err error
		testutil.Within(t, 5*time.Second, path, func() { _, err = ReadFile(path) })
		var nr *NotRegularError
		var pe *fs.PathError
		if !errors.As(err, &nr) || nr.Type != want || !errors.As(err, &pe) || pe.Path != path ||
			pe.Err.Error() != "is a "+want+", not a regular file" {
			t.Errorf("%s: %v, want a %s refused", path, err, want)
		}
	}
}
