package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A signal during a single run (here, its --jitter wait) ends it with the
// shell's convention, 128 + the signal number, and says so in one line,
// not "context canceled". --version answers like the version command.
func TestSignalDuringSingleRun(t *testing.T) {
	bin := build(t)
	if out, err := exec.Command(bin, "--version").Output(); err != nil || !strings.HasPrefix(string(out), "pdsafelist ") {
		t.Errorf("--version: %q %v", out, err)
	}
	dir := t.TempDir()
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		cmd := exec.Command(bin, "sync", "--jitter", "1h", "--state-dir", filepath.Join(dir, "state"),
			"--sink", "nftables:"+filepath.Join(dir, "out.nft"))
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "PDSAFELIST_CONFIG=")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
		_ = cmd.Process.Signal(sig)
		err := cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 128+int(sig) {
			t.Errorf("%s: exit %v, want %d", sig, err, 128+int(sig))
		}
		msg := strings.TrimSpace(stderr.String())
		if !strings.HasPrefix(msg, "error: interrupted by SIG") || strings.Contains(msg, "\n") || strings.Contains(msg, "context canceled") {
			t.Errorf("%s: stderr %q", sig, msg)
		}
	}
}
