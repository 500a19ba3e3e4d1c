// Package clock holds the context-aware waits a run shares: the one sleep
// that retries, polls and the --interval loop use, and Await, which stops
// waiting for work that does not stop when told to.
package clock

import (
	"context"
	"time"
)

// Sleep waits d, or until ctx ends, whose error it then returns.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// StopGrace is how long work told to stop, by a deadline or a signal, gets
// before the run stops waiting for it. It is longer than procrun.WaitDelay,
// so a command is killed by its own runner first; what is left is work
// that does not look at its context, such as a system call blocked on a
// hung file, and the run ends without it.
const StopGrace = 900 * time.Millisecond

// Await runs fn in a goroutine of its own and returns its result, or gives
// up StopGrace after ctx ends: ok is then false and fn is left running,
// its result dropped when it comes. fn must not share what it writes.
func Await[T any](ctx context.Context, fn func() T) (v T, ok bool) {
	done := make(chan T, 1)
	go func() { done <- fn() }()
	select {
	case v = <-done:
		return v, true
	case <-ctx.Done():
	}
	t := time.NewTimer(StopGrace)
	defer t.Stop()
	select {
	case v = <-done:
		return v, true
	case <-t.C:
		return v, false
	}
}
