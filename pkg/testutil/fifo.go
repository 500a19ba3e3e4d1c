package testutil

import (
	"os"
	"syscall"
	"testing"
	"time"
)

// FIFO makes a named pipe at path that no one writes to: opening it to
// read blocks for ever unless the open does not wait. At the end of the
// test a writer opens it once, so a reader a failing test left blocked in
// open is let go.
func FIFO(t testing.TB, path string) string {
	t.Helper()
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	})
	return path
}

// Within runs fn and fails the test at once, rather than hanging it, when
// fn has not returned after d.
func Within(t testing.TB, d time.Duration, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s: still blocked after %s", what, d)
	}
}
