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
