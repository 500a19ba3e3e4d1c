package clock_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pdsafelist/pdsafelist/pkg/clock"
)

func TestSleepEndsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	began := time.Now()
	if err := clock.Sleep(ctx, time.Minute); !errors.Is(err, context.Canceled) || time.Since(began) > 10*time.Second {
		t.Errorf("Sleep = %v after %s, want context.Canceled at the cancel", err, time.Since(began))
	}
	if err := clock.Sleep(context.Background(), time.Millisecond); err != nil {
		t.Errorf("Sleep of a live context = %v", err)
	}
	if err := clock.Sleep(ctx, 0); !errors.Is(err, context.Canceled) {
		t.Errorf("Sleep(0) of a cancelled context = %v", err)
	}
}

func TestAwaitGivesUpAfterTheGrace(t *testing.T) {
	if v, ok := clock.Await(context.Background(), func() int { return 7 }); v != 7 || !ok {
		t.Errorf("Await of quick work = %d %v", v, ok)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// Work that stops within the grace is waited for.
	if v, ok := clock.Await(ctx, func() int { time.Sleep(clock.StopGrace / 4); return 8 }); v != 8 || !ok {
		t.Errorf("Await of work stopping in the grace = %d %v", v, ok)
	}
	stuck := make(chan struct{})
	defer close(stuck)
	began := time.Now()
	v, ok := clock.Await(ctx, func() int { <-stuck; return 9 })
	if took := time.Since(began); v != 0 || ok || took < clock.StopGrace || took > clock.StopGrace+time.Second {
		t.Errorf("Await of stuck work = %d %v after %s, want 0 false after %s", v, ok, took, clock.StopGrace)
	}
}
