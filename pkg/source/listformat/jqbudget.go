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

// jqClockStride is how many instructions run between two reads of the
// clock (BenchmarkJQBudget: a read on every one made the budget cost 5
// times the expression here). A doubling reduce takes more than 16
// instructions a step, so 8 lets none through (TestJQAllocationBounded;
// 32 let one).
const jqClockStride = 8

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
	calls      uint32
}

func (c *budgetCtx) allocated() uint64 {
	metrics.Read(c.sample)
	return c.sample[0].Value.Uint64()
}

func (c *budgetCtx) Done() <-chan struct{} {
	// The clock is read every jqClockStride instructions: a read costs
	// about as much as a simple instruction, and no few instructions can
	// allocate much (a doubling takes several). Each result is polled
	// too, so a short expression cannot slip out between two reads.
	if c.calls++; c.calls%jqClockStride == 0 {
		c.poll()
	}
	return c.Context.Done()
}

// poll reads the process's allocations, at most once a tick, and cancels
// the context once they pass the budget; it reports whether they did.
func (c *budgetCtx) poll() bool {
	if now := time.Now(); now.Sub(c.last) >= jqBudgetTick {
		c.last = now
		if c.allocated()-c.start > c.max {
			c.cancel(fmt.Errorf("%w of %d MiB", errJQBudget, c.max>>20))
		}
	}
	return c.Err() != nil
}

// withAllocBudget returns a context that is cancelled once the process
// has allocated more than max bytes since the call, and the function that
// releases it.
func withAllocBudget(ctx context.Context, max uint64) (*budgetCtx, func()) {
	inner, cancel := context.WithCancelCause(ctx)
	c := &budgetCtx{Context: inner, cancel: cancel, sample: []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}, max: max, last: time.Now()}
	c.start = c.allocated()
	return c, func() { cancel(nil) }
}
