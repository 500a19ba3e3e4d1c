package main

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
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
		// -vv logs the config search once the handlers are in place: the
		// signal is sent only then, however slowly the process starts.
		cmd := exec.Command(bin, "sync", "--jitter", "1h", "--state-dir", filepath.Join(dir, "state"),
			"--sink", "nftables:"+filepath.Join(dir, "out.nft"), "-vv")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "PDSAFELIST_CONFIG=")
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stderr)
		var lines []string
		if sc.Scan() {
			lines = append(lines, sc.Text())
		}
		_ = cmd.Process.Signal(sig)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		err = cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 128+int(sig) {
			t.Errorf("%s: exit %v, want %d", sig, err, 128+int(sig))
		}
		var errs []string
		for _, l := range lines {
			if strings.HasPrefix(l, "error:") || strings.Contains(l, "context canceled") {
				errs = append(errs, l)
			}
		}
		if len(errs) != 1 || !strings.HasPrefix(errs[0], "error: interrupted by SIG") {
			t.Errorf("%s: error lines %q", sig, errs)
		}
	}
}
