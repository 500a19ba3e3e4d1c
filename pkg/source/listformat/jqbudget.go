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
// MB at most, so that is all a doubling reduce can overshoot by, beyond
// the one instruction running when the budget is passed.
const jqBudgetTick = time.Millisecond

var errJQBudget = errors.New("allocated more than its budget")

// budgetCtx is cancelled once the process has allocated more than max
// bytes since it was made. gojq asks Done before every instruction, so the
// check runs on the expression's own goroutine, between instructions, at
// most once a tick: a busy machine can delay a watcher goroutine, never
// this. One instruction is not interrupted: gojq itself caps the largest,
// a string repeat, below 2 GiB. The counter is the process's, so a source
// parsing beside it counts too; the budget leaves room for that. Done is
// called from the one goroutine that runs the expression.
type budgetCtx struct {
	context.Context
	cancel     context.CancelCauseFunc
	sample     []metrics.Sample
	start, max uint64
	last       time.Time
}

func (c *budgetCtx) allocated() uint64 {
	metrics.Read(c.sample)
	return c.sample[0].Value.Uint64()
}

func (c *budgetCtx) Done() <-chan struct{} {
	if now := time.Now(); now.Sub(c.last) >= jqBudgetTick {
		c.last = now
		if c.allocated()-c.start > c.max {
			c.cancel(fmt.Errorf("%w of %d MiB", errJQBudget, c.max>>20))
		}
	}
	return c.Context.Done()
}

// withAllocBudget returns a context that is cancelled once the process
// has allocated more than max bytes since the call, and the function that
// releases it.
func withAllocBudget(ctx context.Context, max uint64) (context.Context, func()) {
	inner, cancel := context.WithCancelCause(ctx)
	c := &budgetCtx{Context: inner, cancel: cancel, sample: []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}, max: max, last: time.Now()}
	c.start = c.allocated()
	return c, func() { cancel(nil) }
}
