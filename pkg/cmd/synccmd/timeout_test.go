package synccmd_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pdsafelist/pdsafelist/pkg/cmd/root"
	"github.com/pdsafelist/pdsafelist/pkg/cmdutil"
	"github.com/pdsafelist/pdsafelist/pkg/testutil"
)

// cli runs pdsafelist with a config whose one set is static, so no network
// is used, and returns the exit code and both outputs.
func cli(t *testing.T, dir string, args ...string) (int, string, string) {
	t.Helper()
	cfg := filepath.Join(dir, "pdsafelist.yaml")
	if _, err := os.Stat(cfg); err != nil {
		conf := "sets: [hooks]\ncatalog:\n  hooks:\n    direction: ingress\n    ports: [443]\n    static: [44.1.2.3, 2001:db9::10]\n"
		if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	streams, out, errOut := cmdutil.Test()
	f := root.NewFactory(streams)
	f.Now = func() time.Time { return time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC) }
	base := []string{"--config", cfg, "--state-dir", filepath.Join(dir, "state")}
	code := root.Execute(context.Background(), f, append(append(args[:1:1], base...), args[1:]...))
	return code, out.String(), errOut.String()
}

// hangingWrapper stands in for `sudo nft` or `ip netns exec NS nft` whose
// child hangs while holding the wrapper's output open. It records its pid,
// which is its process group once the runner makes it a group leader.
func hangingWrapper(t *testing.T, dir string) (path, pidfile string) {
	t.Helper()
	path, pidfile = filepath.Join(dir, "wrap"), filepath.Join(dir, "wrap.pid")
	script := "#!/bin/sh\necho $$ >> " + pidfile + "\nsleep 30 & wait\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path, pidfile
}

// survivors lists the processes ("pid (comm)"), other than zombies, whose
// group is one the wrapper recorded.
func survivors(pidfile string) []string {
	data, _ := os.ReadFile(pidfile)
	return testutil.LiveInGroups(strings.Fields(string(data))...)
}

// --run-timeout must bound a wrapped command and everything it started:
// the run ends within a second or two of the deadline with one line naming
// it, and nothing the wrapper started is left running.
func TestRunTimeoutBoundsWrappedCommands(t *testing.T) {
	tests := []struct {
		name string
		sink func(dir, wrapper string) string
	}{
		{"nftables", func(dir, w string) string {
			return "nftables:" + filepath.Join(dir, "out.nft") + "?apply=true&nft=" + w
		}},
		{"iptables-file", func(dir, w string) string {
			return "iptables-file:" + filepath.Join(dir, "rules.v4") + "?check=always&iptables-restore=" + w + "&ip6tables-restore=" + w
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			wrapper, pidfile := hangingWrapper(t, dir)
			t.Cleanup(func() {
				for _, p := range survivors(pidfile) {
					pid, _ := strconv.Atoi(strings.Fields(p)[0])
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			})
			start := time.Now()
			code, _, errOut := cli(t, dir, "sync", "--run-timeout", "3s", "--sink", tt.sink(dir, wrapper))
			took := time.Since(start)
			if code != 1 || !strings.Contains(errOut, "run deadline exceeded (--run-timeout 3s)") {
				t.Fatalf("code %d after %s: %s", code, took, errOut)
			}
			if strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
				t.Errorf("not one line: %q", errOut)
			}
			if took > 6*time.Second {
				t.Errorf("run took %s under a 3s deadline", took)
			}
			deadline := time.Now().Add(2 * time.Second)
			for len(survivors(pidfile)) > 0 && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if left := survivors(pidfile); len(left) > 0 {
				t.Errorf("processes the wrapper started outlived the run: %v", left)
			}
		})
	}
}
