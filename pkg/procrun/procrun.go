// Package procrun runs the external commands sinks depend on (nft,
// iptables-restore, ipset, and wrappers such as sudo or ip netns exec) so
// that a run's deadline holds for the command and everything it started.
package procrun

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// WaitDelay bounds how long a command may outlive its context, and how long
// inherited output pipes may hold a run after the command itself exited.
// It is shorter than clock.StopGrace, after which a run stops waiting.
const WaitDelay = 500 * time.Millisecond

// Run runs argv with stdin and returns its standard output. The command
// gets its own process group: on cancel the whole group is sent SIGTERM
// (so sudo can pass it on), the leader is killed WaitDelay later, and
// whatever of the group is left after the leader is gone is killed, so no
// wrapper's child outlives the call.
//
// The error is one line: the command, then the lines of its standard
// error that carry the error (see Summary), or the reason it was stopped.
func Run(ctx context.Context, argv []string, stdin []byte) ([]byte, error) {
	if len(argv) == 0 {
		return nil, errors.New("no command given")
	}
	var c *exec.Cmd
	var stderr bytes.Buffer
	stdout := newOutput()
	defer stdout.close()
	var err error
	for attempt := 0; ; attempt++ {
		c = exec.CommandContext(ctx, argv[0], argv[1:]...)
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		c.Cancel = func() error { return signalGroup(c.Process.Pid, syscall.SIGTERM) }
		c.WaitDelay = WaitDelay
		if stdin != nil {
			c.Stdin = bytes.NewReader(stdin)
		}
		stdout.reset()
		stderr.Reset()
		c.Stdout, c.Stderr = stdout.writer(), &stderr
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
	out, rerr := stdout.bytes()
	if err != nil {
		msg := reason(ctx, stderr.Bytes(), err)
		if ctx.Err() != nil {
			// How the group died matters less than why it was stopped.
			err = ctx.Err()
		}
		return out, &Error{Argv: argv, Stderr: stderr.Bytes(), msg: msg, err: err}
	}
	if rerr != nil {
		return nil, &Error{Argv: argv, msg: "reading its output: " + rerr.Error(), err: rerr}
	}
	return out, nil
}

// output holds a command's standard output in an anonymous memory file
// rather than a pipe: nft writes a listing a few bytes at a time, and each
// write into a pipe wakes this process to read it (0.25-0.5 s of our CPU
// for 100,000 set elements); the file is read once, at the end. Without
// memfd_create it falls back to a pipe into a buffer.
type output struct {
	f   *os.File
	buf bytes.Buffer
}

func newOutput() *output {
	fd, err := unix.MemfdCreate("procrun-stdout", unix.MFD_CLOEXEC)
	if err != nil {
		return &output{}
	}
	return &output{f: os.NewFile(uintptr(fd), "procrun-stdout")}
}

func (o *output) writer() io.Writer {
	if o.f != nil {
		return o.f
	}
	return &o.buf
}

func (o *output) reset() {
	o.buf.Reset()
	if o.f != nil {
		_ = o.f.Truncate(0)
		_, _ = o.f.Seek(0, io.SeekStart)
	}
}

func (o *output) bytes() ([]byte, error) {
	if o.f == nil {
		return o.buf.Bytes(), nil
	}
	st, err := o.f.Stat()
	if err != nil {
		return nil, err
	}
	b := make([]byte, st.Size())
	if _, err := io.ReadFull(io.NewSectionReader(o.f, 0, st.Size()), b); err != nil {
		return nil, err
	}
	return b, nil
}

func (o *output) close() {
	if o.f != nil {
		_ = o.f.Close()
	}
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
	if s := Summary(stderr); s != "" {
		return s
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

// Bounds of Summary: a chatty command cannot flood a log line.
const (
	summaryLines   = 4
	summaryLineLen = 300
)

// errorWord marks a line that carries the error rather than a notice:
// nginx's [emerg] and [alert], HAProxy's [ALERT], nft's "Error:",
// iptables-restore's "line 3 failed".
var errorWord = regexp.MustCompile(`(?i)error|emerg|alert|crit|fatal|fail|denied|invalid|unknown|cannot|can't|not found|no such`)

// Summary is the part of a command's standard error worth one log line:
// the lines that carry the error, or without any, the last lines, which
// is where a program states its verdict. nginx and HAProxy print notices
// (version, path) first, so the first line alone says nothing. At most
// summaryLines lines, each cut to summaryLineLen, joined with " | ".
func Summary(stderr []byte) string {
	var all, errs []string
	for _, l := range strings.Split(string(stderr), "\n") {
		l = strings.Join(strings.Fields(l), " ")
		if l == "" {
			continue
		}
		if len(l) > summaryLineLen {
			l = strings.ToValidUTF8(l[:summaryLineLen], "") + "..."
		}
		all = append(all, l)
		if errorWord.MatchString(l) {
			errs = append(errs, l)
		}
	}
	pick := errs
	if len(pick) == 0 {
		pick = all
		if len(pick) > summaryLines {
			pick = pick[len(pick)-summaryLines:]
		}
	}
	more := ""
	if len(pick) > summaryLines {
		more = fmt.Sprintf(" | (%d more error lines)", len(pick)-summaryLines)
		pick = pick[:summaryLines]
	}
	return strings.Join(pick, " | ") + more
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
