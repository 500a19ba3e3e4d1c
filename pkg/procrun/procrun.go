// Package procrun runs the external commands sinks depend on (nft,
// iptables-restore, ipset, and wrappers such as sudo or ip netns exec) so
// that a run's deadline holds for the command and everything it started.
package procrun

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// WaitDelay bounds how long a command may outlive its context, and how long
// inherited output pipes may hold a run after the command itself exited.
const WaitDelay = time.Second

// Run runs argv with stdin and returns its standard output. The command
// gets its own process group: on cancel the whole group is sent SIGTERM
// (so sudo can pass it on), the leader is killed WaitDelay later, and
// whatever of the group is left after the leader is gone is killed, so no
// wrapper's child outlives the call.
//
// The error is one line: the command, then the first line of its standard
// error, or the reason it was stopped.
func Run(ctx context.Context, argv []string, stdin []byte) ([]byte, error) {
	if len(argv) == 0 {
		return nil, errors.New("no command given")
	}
	var c *exec.Cmd
	var stdout, stderr bytes.Buffer
	var err error
	for attempt := 0; ; attempt++ {
		c = exec.CommandContext(ctx, argv[0], argv[1:]...)
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		c.Cancel = func() error { return signalGroup(c.Process.Pid, syscall.SIGTERM) }
		c.WaitDelay = WaitDelay
		if stdin != nil {
			c.Stdin = bytes.NewReader(stdin)
		}
		stdout.Reset()
		stderr.Reset()
		c.Stdout, c.Stderr = &stdout, &stderr
		err = c.Run()
		// A script written a moment ago can still be open for writing in
		// a child another goroutine forked and has not yet exec'd (Go
		// issue 22315): exec fails with ETXTBSY until that child execs.
		// Nothing ran, so starting again is safe.
		if c.Process != nil || !errors.Is(err, syscall.ETXTBSY) || attempt == 4 || ctx.Err() != nil {
			break
		}
		time.Sleep(time.Duration(attempt+1) * 20 * time.Millisecond)
	}
	if c.Process != nil {
		// The group outlives its leader while a member lives, so its id
		// cannot be reused yet; anything still in it is ours.
		_ = signalGroup(c.Process.Pid, syscall.SIGKILL)
	}
	if err != nil {
		msg := reason(ctx, stderr.Bytes(), err)
		if ctx.Err() != nil {
			// How the group died matters less than why it was stopped.
			err = ctx.Err()
		}
		return stdout.Bytes(), &Error{Argv: argv, Stderr: stderr.Bytes(), msg: msg, err: err}
	}
	return stdout.Bytes(), nil
}

func signalGroup(pid int, sig syscall.Signal) error {
	err := syscall.Kill(-pid, sig)
	if errors.Is(err, syscall.ESRCH) {
		return os.ErrProcessDone
	}
	return err
}

// reason prefers the context's verdict: a killed command's stderr, if any,
// says less than "context deadline exceeded".
func reason(ctx context.Context, stderr []byte, err error) string {
	if ctx.Err() != nil {
		return "stopped: " + ctx.Err().Error()
	}
	if errors.Is(err, exec.ErrWaitDelay) {
		return "exited, but a process it started kept its output open; stopped it"
	}
	for _, l := range strings.Split(string(stderr), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			return l
		}
	}
	// Not started: the command is named already, keep only the reason.
	var ee *exec.Error
	if errors.As(err, &ee) {
		return ee.Err.Error()
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// Error names the command that failed and why, in one line.
type Error struct {
	Argv []string
	// Stderr is everything the command wrote there, for callers that
	// parse it.
	Stderr []byte
	msg    string
	err    error
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", strings.Join(e.Argv, " "), e.msg) }
func (e *Error) Unwrap() error { return e.err }
