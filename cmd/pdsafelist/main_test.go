package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// build compiles the real binary once per test run.
func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "pdsafelist")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// SIGTERM in interval mode ends the loop between runs with exit 0.
func TestIntervalStopsOnSIGTERM(t *testing.T) {
	bin := build(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "pdsafelist.yaml")
	if err := os.WriteFile(cfg, []byte("sets: [hooks]\ncatalog:\n  hooks: {direction: ingress, ports: [443], static: [193.0.2.10]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "sync", "--config", cfg, "--state-dir", filepath.Join(dir, "state"),
		"--sink", "nftables:"+filepath.Join(dir, "out.nft")+"?check=never", "--interval", "100ms", "--log-format", "json")
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	lines := make(chan map[string]any, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				lines <- m
			}
		}
		close(lines)
	}()
	runs := 0
	timeout := time.After(20 * time.Second)
	for runs < 3 {
		select {
		case m := <-lines:
			if m["msg"] == "sync finished" {
				runs++
			}
		case <-timeout:
			t.Fatalf("only %d runs in 20s; stdout:\n%s", runs, stdout.String())
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("did not stop within 10s of SIGTERM")
	}
	stopped := false
	for m := range lines {
		stopped = stopped || strings.HasPrefix(m["msg"].(string), "stopping")
	}
	if !stopped {
		t.Error("no stopping log line")
	}
	if n := strings.Count(stdout.String(), "Sets:"); n < 3 {
		t.Errorf("stdout shows %d runs", n)
	}
}

func TestVersion(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "pdsafelist")
	ldflags := "-X github.com/pdsafelist/pdsafelist/pkg/build.Version=1.2.3 -X github.com/pdsafelist/pdsafelist/pkg/build.Commit=abc123"
	if out, err := exec.Command("go", "build", "-ldflags", ldflags, "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version", "-o", "json").Output()
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]string
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if v["version"] != "1.2.3" || v["commit"] != "abc123" {
		t.Errorf("version = %v", v)
	}
}
