package listformat

import (
	"context"
	"errors"
	"fmt"
	"runtime/metrics"
	"time"
)

// jqBaseBudget is what a jq expression may allocate beyond 16 times its
// document: picking entries out of a list costs a fraction of the list
// (7 MB for 100,000 AWS-shaped entries), while [range(5000000)] or a
// doubling reduce would take the host's memory.
const jqBaseBudget = 64 << 20

// jqBudgetTick is how often a running expression's allocations are read.
// A read costs about 2 µs; in a millisecond one goroutine allocates a few
// MB at most, so that is all a doubling reduce can overshoot by.
const jqBudgetTick = time.Millisecond

var errJQBudget = errors.New("allocated more than its budget")

// withAllocBudget returns a context that is cancelled once the process
// has allocated more than max bytes since the call, and the function that
// stops watching. gojq checks its context before every instruction, so
// the expression stops within an instruction of the cancel. The counter is
// the process's, so a source parsing beside it counts too; the budget
// leaves room for that. One instruction is not interrupted: gojq itself
// caps the largest, a string repeat, below 2 GiB.
func withAllocBudget(ctx context.Context, max uint64) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	sample := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	read := func() uint64 {
		metrics.Read(sample)
		return sample[0].Value.Uint64()
	}
	start := read()
	stopped := make(chan struct{})
	go func() {
		t := time.NewTicker(jqBudgetTick)
		defer t.Stop()
		for {
			select {
			case <-stopped:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				if read()-start > max {
					cancel(fmt.Errorf("%w of %d MiB", errJQBudget, max>>20))
					return
				}
			}
		}
	}()
	return ctx, func() {
		close(stopped)
		cancel(nil)
	}
}
