package procrun_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pdsafelist/pdsafelist/pkg/clock"
	"github.com/pdsafelist/pdsafelist/pkg/procrun"
	"github.com/pdsafelist/pdsafelist/pkg/testutil"
)

// wrapper writes a shell script that records its pid (its process group,
// since Run makes it a leader) in pidfile, then runs body.
func wrapper(t *testing.T, body string) (path, pidfile string) {
	t.Helper()
	dir := t.TempDir()
	path, pidfile = filepath.Join(dir, "wrap"), filepath.Join(dir, "pid")
	script := "#!/bin/sh\necho $$ > " + pidfile + "\n" + body + "\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path, pidfile
}

// alive lists the live (not zombie) processes in group pgid.
func alive(pgid int) []string { return testutil.LiveInGroups(strconv.Itoa(pgid)) }

func readPid(t *testing.T, pidfile string) int {
	t.Helper()
	data, err := os.ReadFile(pidfile)
	if err != nil {
		t.Fatalf("wrapper never started: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// groupGone waits briefly for the orphans to be reaped and reports
// survivors of the group.
func groupGone(t *testing.T, pgid int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		left := alive(pgid)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, p := range left {
				pid, _ := strconv.Atoi(strings.Fields(p)[0])
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			t.Fatalf("processes of group %d survived the call: %v", pgid, left)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A wrapper (sudo nft, ip netns exec, docker exec) whose child hangs: the
// deadline must hold for the whole group, and pipes the child holds must
// not keep the call waiting.
func TestDeadlineEndsWholeGroup(t *testing.T) {
	tests := []struct{ name, body string }{
		// The child holds stdout and stderr while the wrapper waits.
		{"child holds output", "sleep 30 & wait"},
		// Neither the wrapper nor its child heeds SIGTERM.
		{"ignores SIGTERM", "trap '' TERM\nsleep 30 & wait"},
		// The grandchild inherits stdout from a subshell.
		{"grandchild holds stdout", "sh -c 'sleep 30 & wait' &\nwait"},
		// The wrapper execs into something that never ends.
		{"exec", "exec sleep 30"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel() // each mostly waits for its deadline
			path, pidfile := wrapper(t, tt.body)
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			start := time.Now()
			_, err := procrun.Run(ctx, []string{path, "-f", "/etc/x.nft"}, nil)
			took := time.Since(start)
			if err == nil || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err = %v, want the deadline", err)
			}
			if took > 5*time.Second {
				t.Errorf("returned after %s under a 3s deadline", took)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, path+" -f /etc/x.nft: ") || !strings.Contains(msg, "deadline") || strings.Contains(msg, "\n") {
				t.Errorf("error = %q, want one line naming the command and the deadline", msg)
			}
			groupGone(t, readPid(t, pidfile))
		})
	}
}

// A wrapper that exits at once but leaves a child holding its stdout must
// not hold the call until the child ends, nor leave it running.
func TestExitedWrapperLeavesNothing(t *testing.T) {
	path, pidfile := wrapper(t, "sleep 30 &\necho done")
	start := time.Now()
	out, err := procrun.Run(context.Background(), []string{path}, nil)
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("returned after %s; the child held the pipe", took)
	}
	if err == nil || strings.Contains(err.Error(), "\n") {
		t.Errorf("err = %v, want one line saying the output was held open", err)
	}
	if string(out) != "done\n" {
		t.Errorf("out = %q", out)
	}
	groupGone(t, readPid(t, pidfile))
}

// A child that leaves the group can't be killed with it, but its pipes
// still cannot hold the call.
func TestEscapedChildCannotHoldPipes(t *testing.T) {
	dir := t.TempDir()
	escaped := filepath.Join(dir, "escaped")
	path, _ := wrapper(t, "setsid sh -c 'echo $$ > "+escaped+"; exec sleep 30' &\nwait")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	_, err := procrun.Run(ctx, []string{path}, nil)
	if data, rerr := os.ReadFile(escaped); rerr == nil {
		if pid, _ := strconv.Atoi(strings.TrimSpace(string(data))); pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("returned after %s", took)
	}
	if err == nil {
		t.Error("no error although the output was held open")
	}
}

func TestErrorIsOneLineWithStderr(t *testing.T) {
	path, _ := wrapper(t, "cat >/dev/null\necho 'Error: syntax error' >&2\necho '  add element x' >&2\nexit 1")
	out, err := procrun.Run(context.Background(), []string{path, "-c", "-f", "x"}, []byte("input"))
	var pe *procrun.Error
	if !errors.As(err, &pe) || err.Error() != path+" -c -f x: Error: syntax error" {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(string(pe.Stderr), "add element x") || len(out) != 0 {
		t.Errorf("stderr %q, stdout %q", pe.Stderr, out)
	}
	if _, err := procrun.Run(context.Background(), []string{"/nonexistent/nft"}, nil); err == nil ||
		err.Error() != "/nonexistent/nft: no such file or directory" {
		t.Errorf("missing command: %v", err)
	}
}

func TestStdinAndStdout(t *testing.T) {
	out, err := procrun.Run(context.Background(), []string{"cat"}, []byte("*filter\nCOMMIT\n"))
	if err != nil || string(out) != "*filter\nCOMMIT\n" {
		t.Fatalf("out %q err %v", out, err)
	}
}

// A script still open for writing (as in a child another goroutine forked
// before exec) cannot be executed yet: Run starts it again once it can,
// instead of failing with "text file busy".
func TestRunRetriesTextFileBusy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "script")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("#!/bin/sh\necho ran\n"); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(30 * time.Millisecond)
		f.Close()
	}()
	out, err := procrun.Run(context.Background(), []string{path}, nil)
	if err != nil || strings.TrimSpace(string(out)) != "ran" {
		t.Fatalf("Run = %q, %v", out, err)
	}
}

// A command told to stop is killed by Run before a run stops waiting for
// the step that ran it, so no command outlives the process.
func TestWaitDelayWithinStopGrace(t *testing.T) {
	if procrun.WaitDelay+200*time.Millisecond > clock.StopGrace {
		t.Errorf("WaitDelay %s leaves under 200ms before clock.StopGrace %s", procrun.WaitDelay, clock.StopGrace)
	}
}

// nginx and HAProxy print notices before the error: the summary keeps the
// lines that carry it; without any such line, the last few; bounded.
func TestSummaryKeepsTheErrorLines(t *testing.T) {
	haproxy := "[NOTICE]   (1) : haproxy version is 2.6.12\n[NOTICE]   (1) : path to executable is /usr/sbin/haproxy\n" +
		"[ALERT]    (1) : config : parsing [h.cfg:10] : unknown keyword 'x' in 'frontend' section\n[ALERT]    (1) : config : Fatal errors found in configuration.\n"
	long := strings.Repeat("error ", 200)
	for _, c := range []struct{ in, want string }{
		{haproxy, "[ALERT] (1) : config : parsing [h.cfg:10] : unknown keyword 'x' in 'frontend' section | [ALERT] (1) : config : Fatal errors found in configuration."},
		{"Error: syntax error\n  add element x\n  ^^^\n", "Error: syntax error"},
		{"one\ntwo\nthree\nfour\nfive\n", "two | three | four | five"},
		{"e1 error\ne2 error\ne3 error\ne4 error\ne5 error\ne6 error\n", "e1 error | e2 error | e3 error | e4 error | (2 more error lines)"},
		{long, strings.TrimSpace(long)[:300] + "..."},
		{"\n \n", ""},
	} {
		if got := procrun.Summary([]byte(c.in)); got != c.want {
			t.Errorf("Summary(%q)\n got %q\nwant %q", c.in, got, c.want)
		}
	}
	path, _ := wrapper(t, "printf '[NOTICE] version 1\\n[ALERT] parsing: bad\\n' >&2\nexit 1")
	if _, err := procrun.Run(context.Background(), []string{path}, nil); err == nil || err.Error() != path+": [ALERT] parsing: bad" {
		t.Errorf("err = %v", err)
	}
}
