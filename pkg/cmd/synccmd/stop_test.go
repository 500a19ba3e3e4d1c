package synccmd_test

import (
	"context"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pdsafelist/pdsafelist/pkg/cmd/root"
	"github.com/pdsafelist/pdsafelist/pkg/cmdutil"
	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/testutil"
)

// stuckSink waits, in the step named by stuckIn, on something that does
// not look at its context (a system call on a hung file, say), telling
// entered when it starts to.
type stuckSink struct {
	stuckIn          string
	entered, release chan struct{}
}

func newStuckSink(t *testing.T, in string) *stuckSink {
	s := &stuckSink{stuckIn: in, entered: make(chan struct{}, 1), release: make(chan struct{})}
	t.Cleanup(func() { close(s.release) })
	return s
}

func (s *stuckSink) wait(step string) {
	if step == s.stuckIn {
		s.entered <- struct{}{}
		<-s.release
	}
}

func (s *stuckSink) Name() string { return "stuck:test" }
func (s *stuckSink) Current(context.Context) (plan.State, error) {
	s.wait("read")
	return plan.State{}, nil
}
func (s *stuckSink) Apply(context.Context, plan.SinkPlan) error {
	s.wait("apply")
	return nil
}

// stuckRun runs sync on a stuck sink with ctx and returns the exit code,
// stderr and how long the run took.
func stuckRun(t *testing.T, ctx context.Context, s *stuckSink, args ...string) (int, string, time.Duration) {
	e := newEnv(t)
	e.config(addrs(3, 100)...)
	streams, _, errOut := cmdutil.Test()
	f := root.NewFactory(streams)
	f.Now = func() time.Time { return e.now }
	f.Registry["stuck"] = sink.Factory{Help: "stuck  test sink", Open: func(sink.Spec, sink.Env) (sink.Sink, error) { return s, nil }}
	start := time.Now()
	var code int
	testutil.Within(t, 10*time.Second, "sync", func() {
		code = root.Execute(ctx, f, append([]string{"sync", "--state-dir", e.state, "--sink", "stuck",
			"--config", filepath.Join(e.dir, "pdsafelist.yaml")}, args...))
	})
	return code, errOut.String(), time.Since(start)
}

// --run-timeout ends a run whose sink read does not stop: the read is left
// behind and fails with the deadline named, and the run ends within about
// a second of it.
func TestRunTimeoutLeavesAStuckReadBehind(t *testing.T) {
	code, errOut, took := stuckRun(t, context.Background(), newStuckSink(t, "read"), "--run-timeout", "200ms")
	if code != 1 || !strings.Contains(errOut, "run deadline exceeded (--run-timeout 200ms)") || !strings.Contains(errOut, "did not stop within") {
		t.Fatalf("code %d: %s", code, errOut)
	}
	if took > 2*time.Second {
		t.Errorf("run took %s after a 200ms deadline", took)
	}
}

// The first SIGTERM ends a single run within about a second whatever it
// waits on, here an apply that does not look at its context, with the
// signal's exit code and one line.
func TestSignalEndsAStuckRun(t *testing.T) {
	s := newStuckSink(t, "apply")
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	var signalled time.Time
	go func() {
		<-s.entered
		signalled = time.Now()
		cancel(&cmdutil.InterruptedError{Signal: syscall.SIGTERM})
	}()
	code, errOut, _ := stuckRun(t, ctx, s)
	if code != 128+int(syscall.SIGTERM) || !strings.HasPrefix(errOut, "error: interrupted by SIGTERM") || strings.Count(errOut, "\n") != 1 {
		t.Fatalf("code %d: %q", code, errOut)
	}
	if d := time.Since(signalled); d > 1500*time.Millisecond {
		t.Errorf("run ended %s after the signal", d)
	}
}
