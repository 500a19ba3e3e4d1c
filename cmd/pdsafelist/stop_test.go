package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gofrs/flock"
	"golang.org/x/sys/unix"
)

// The first SIGTERM ends a single run within about a second whatever it
// waits on, here a write to a full standard output no one reads (no
// context reaches a write), and the lock it held is free at once.
func TestSignalEndsARunBlockedOnOutput(t *testing.T) {
	bin := build(t)
	dir := t.TempDir()
	var static []string
	for a := range 40 {
		for b := range 200 {
			static = append(static, fmt.Sprintf("44.%d.%d.1", a, b))
		}
	}
	cfg := filepath.Join(dir, "pdsafelist.yaml")
	conf := "sets: [hooks]\ncatalog:\n  hooks: {direction: ingress, ports: [443], static: [" + strings.Join(static, ", ") + "]}\n"
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	unread, out, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer unread.Close()
	state := filepath.Join(dir, "state")
	cmd := exec.Command(bin, "sync", "--config", cfg, "--state-dir", state, "--sink", "nftables:"+filepath.Join(dir, "out.nft")+"?check=never")
	cmd.Stdout = out
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	out.Close()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	// Blocked once the pipe is full: its whole capacity is waiting.
	size, err := unix.FcntlInt(unread.Fd(), unix.F_GETPIPE_SZ, 0)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		n, err := unix.IoctlGetInt(int(unread.Fd()), unix.TIOCINQ) // FIONREAD
		if err == nil && n >= size {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("exited before blocking: %v\n%s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("output never filled the pipe (%d of %d bytes)", n, size)
		}
	}
	lock := flock.New(filepath.Join(state, "pdsafelist.lock"))
	if ok, err := lock.TryLock(); ok || err != nil {
		t.Fatalf("the blocked run does not hold the lock (%v %v): the test proves nothing", ok, err)
	}
	signalled := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err = <-exited:
	case <-time.After(5 * time.Second):
		t.Fatalf("still running 5s after SIGTERM\n%s", stderr.String())
	}
	if d := time.Since(signalled); d > 2*time.Second {
		t.Errorf("exited %s after SIGTERM", d)
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 128+int(syscall.SIGTERM) || !strings.HasPrefix(stderr.String(), "error: interrupted by SIGTERM") {
		t.Errorf("exit %v, stderr %q", err, stderr.String())
	}
	if ok, err := lock.TryLock(); !ok || err != nil {
		t.Errorf("lock not free after the run ended: %v %v", ok, err)
	}
	_ = lock.Unlock()
}
