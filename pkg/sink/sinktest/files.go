package sinktest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/pdsafelist/pdsafelist/pkg/sink"
)

// ReadOnlyDir returns an empty directory nothing can be written in. Root
// ignores mode bits, so as root it is a read-only tmpfs mounted for the
// test; elsewhere mode 0555 is enough.
func ReadOnlyDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ro")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		if err := os.Chmod(dir, 0o555); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.Chmod(dir, 0o755) })
		return dir
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_RDONLY|syscall.MS_NOSUID|syscall.MS_NODEV, "size=64k"); err != nil {
		t.Skipf("read-only tmpfs for the test: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, 0) })
	return dir
}

// filesIn opens a sink with its files in dir and lists them.
func filesIn(t testing.TB, tg *Target, dir string) (sink.Sink, []string) {
	t.Helper()
	s := tg.OpenIn(t, dir)
	fw, ok := s.(sink.FileWriter)
	if !ok {
		t.Fatalf("%s from OpenIn is no sink.FileWriter", s.Name())
	}
	files := fw.Files()
	if len(files) == 0 {
		t.Fatalf("%s lists no files", s.Name())
	}
	for _, f := range files {
		if filepath.Dir(f) != dir {
			t.Fatalf("%s writes %s, outside %s", s.Name(), f, dir)
		}
	}
	return s, files
}

// The README's /etc/nftables.d does not exist on Debian 12: a sink
// creates the directory it writes in. A write that fails names the file
// the operator gave; the temp file beside it means nothing to them.
func fileDirectory(t testing.TB, tg *Target, _ func(testing.TB) *Target) {
	ctx := context.Background()
	missing := filepath.Join(t.TempDir(), "missing.d")
	s, files := filesIn(t, tg, missing)
	if _, err := Sync(ctx, stepFor(s, base()), base()); err != nil {
		t.Fatalf("sync into a missing directory: %v", err)
	}
	for _, f := range files {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("after a sync into a missing directory: %v", err)
		}
	}

	s, files = filesIn(t, tg, ReadOnlyDir(t))
	_, err := Sync(ctx, stepFor(s, base()), base())
	if err == nil {
		t.Fatal("a sync into a read-only directory succeeded")
	}
	oneLine(t, err)
	msg, named := err.Error(), false
	for _, f := range files {
		named = named || strings.Contains(msg, f)
		if strings.Contains(msg, "."+filepath.Base(f)) {
			t.Errorf("error %q names a temp file beside %s", msg, f)
		}
	}
	if !named {
		t.Errorf("error %q names none of %q", msg, files)
	}
}
