// Package controller runs one sync cycle, as external-dns's
// controller.RunOnce does: resolve, read every sink, retain, plan, guard,
// apply, save state, report. A live run and a saved plan take the same
// path from the sink reads on, so neither can skip a check the other makes.
package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pdsafelist/pdsafelist/pkg/clock"
	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/resolution"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/state"
)

// Target is one opened sink and the spec that routes sets to it.
type Target struct {
	Spec sink.Spec
	Sink sink.Sink
}

// Controller holds what every run of one invocation shares.
type Controller struct {
	Targets []Target
	// Defined is every set the config defines, selected this run or not;
	// a nil value is a set defined but invalid. Owned entries of a set
	// that is not defined and routed to their sink are retired.
	// Each is the set's shape (name, direction, protocol, ports) with no
	// addresses.
	Defined map[string]*plan.DesiredSet
	Policy  string
	Limits  plan.Limits
	// Guards are skipped with Force.
	Guards plan.RunGuards
	Force  bool
	// Retention is how long an address stays after it left an answer.
	Retention        state.Window
	Parallelism      int
	RunTimeout       time.Duration
	DetailedExitcode bool
	StatePath        string
	// Store, when set, keeps the state instead of the file at StatePath.
	Store state.Store
	Now   func() time.Time
	// Warn reports something the operator should see; the run goes on.
	Warn func(msg string)
	// Log gets the run's milestones (info) and each sink read and write
	// (debug); nil logs nothing.
	Log *slog.Logger
	// Alerts, when set, notify about every run that was not a dry run and
	// keep the open alerts in the state; Summary, when set, sees every
	// finished run.
	Alerts  *Alerts
	Summary *Summary
}

// SinkReport is one sink's plan and what happened to it.
type SinkReport struct {
	Plan    plan.SinkPlan
	Applied bool
	Err     error
}

// Report is everything one run decided and did, as output prints it.
type Report struct {
	DryRun bool
	Sets   []resolution.SetResult
	Sinks  []SinkReport
}

// Run is everything one cycle produced, for output, metrics and alerts.
type Run struct {
	Start, End time.Time
	Report     Report
	// States are what each target held when read, by target.
	States []plan.State
	// Refused names the guards that refused.
	Refused []plan.Guard
	// Saved is a run of a saved plan: no set was resolved.
	Saved bool
	Err   error
}

// Live is a run that resolves the sets now.
type Live struct {
	DryRun  bool
	Resolve func(ctx context.Context) ([]resolution.SetResult, error)
	// SourceLists keeps every source's addresses in the report for an
	// output that prints them (sync -o json); otherwise only their count
	// outlives retention.
	SourceLists bool
	// Planned sees the guarded plan before anything is applied (to save
	// it with --plan-out); its error ends the run.
	Planned func(r *Run) error
}

// RunOnce resolves, plans and, unless it is a dry run, applies.
func (c *Controller) RunOnce(ctx context.Context, live Live) (*Run, error) {
	r := &Run{Start: c.Now()}
	r.Report.DryRun = live.DryRun
	st, err := c.loadState(ctx, live.DryRun)
	if err != nil {
		return nil, err
	}
	// A dry run saves no state, so retention need not build what it would
	// save.
	st.Scratch = live.DryRun
	results, err := live.Resolve(ctx)
	if err != nil {
		return nil, err
	}
	r.Report.Sets = results
	c.log().Info("sets resolved", "sets", len(results), "sinks", len(c.Targets))
	// One deadline for every sink's reads and applies, so a hung API call
	// or command cannot hold the lock for ever; each apply is re-runnable.
	sinkCtx, cancel := context.WithTimeout(ctx, c.RunTimeout)
	defer cancel()
	readCtx := sinkCtx
	if live.DryRun {
		// A dry run writes nothing, not even a sink's read cache.
		readCtx = sink.ReadOnly(sinkCtx)
	}
	// Retention reads what our sinks hold for a set with no memory (a
	// lost state file) or a frozen one, so it then runs after every sink
	// was read. When no set needs that, it runs first: the sources' lists,
	// let go once retention has read them, are not held while the sinks'
	// reads fill the heap (38 of the 167 MB at the peak of a no-change run
	// at a million addresses).
	need := needHeld(results, st)
	retain := func() {
		resolution.Retain(results, st, c.Now(), resolution.RetainPolicy{Window: c.Retention, Limits: c.Limits}, held(r.States, need))
		if !live.SourceLists {
			release(results)
		}
	}
	if len(need) == 0 {
		retain()
		c.read(readCtx, r)
	} else {
		c.read(readCtx, r)
		retain()
	}
	desired := resolution.Desired(results)
	each(len(c.Targets), c.Parallelism, func(i int) {
		rep := &r.Report.Sinks[i]
		if rep.Err != nil {
			return
		}
		// The plan is still shown; a Shaper's refusal stops it like Check's.
		rep.Plan, rep.Err = c.step(c.Targets[i]).Plan(desired, r.States[i])
	})
	c.warnReadBack(r)
	c.guard(r)
	for _, rep := range r.Report.Sinks {
		c.log().Info("sink planned", "sink", rep.Plan.Sink, "add", len(rep.Plan.Add), "remove", len(rep.Plan.Remove), "err", rep.Err)
	}
	for _, res := range results {
		if res.Err != nil {
			if g, ok := plan.RefusedBy(res.Err); ok {
				r.Refused = append(r.Refused, g)
			}
		}
	}
	if live.Planned != nil {
		if err := live.Planned(r); err != nil {
			return nil, err
		}
	}
	if !live.DryRun {
		c.apply(sinkCtx, r)
	}
	c.end(ctx, sinkCtx, r, st, live.DryRun, resolution.Errors(results))
	return r, r.Err
}

// release drops the sources' addresses, which nothing reads after
// retention but their count, and collects a large resolve phase's memory
// (the lists, response bodies, sort keys) before the plan allocates its
// own, so the plan's entries reuse those pages: at a million addresses a
// dry run touches 26k pages instead of 40k (each costs a fault, about
// 17 µs on the 2-core VM here), and its peak RSS goes from about 175 to
// 120-140 MB. Handing the pages to the OS instead (debug.FreeOSMemory)
// lowers RSS as much but faults them all in again.
func release(results []resolution.SetResult) {
	n := 0
	for i := range results {
		for j := range results[i].Sources {
			n += len(results[i].Sources[j].Addresses)
			results[i].Sources[j].Release()
		}
	}
	if n >= releaseAbove {
		runtime.GC()
	}
}

// releaseAbove is the number of addresses (about 4 MB of lists) below
// which a run's memory is not worth a collection.
const releaseAbove = 100_000

// loadState reads the state file; a corrupt one is set aside (not on a dry
// run, which changes nothing) and the run starts from empty memory.
func (c *Controller) loadState(ctx context.Context, dryRun bool) (*state.File, error) {
	st, err := c.store().Load(ctx)
	var corrupt *state.CorruptError
	if err != nil && !errors.As(err, &corrupt) {
		return nil, err
	}
	if corrupt != nil {
		if !dryRun {
			if aerr := corrupt.SetAside(c.Now()); aerr != nil {
				return nil, aerr
			}
		}
		c.warn(corrupt.Error())
	}
	return st, nil
}

func (c *Controller) store() state.Store {
	if c.Store != nil {
		return c.Store
	}
	return state.FileStore{Path: c.StatePath}
}

func (c *Controller) warn(msg string) {
	if c.Warn != nil {
		c.Warn(msg)
	}
}

// read reads every sink at once. A sink that cannot be read gets an error
// and an empty plan; the others proceed.
func (c *Controller) read(ctx context.Context, r *Run) {
	r.Report.Sinks = make([]SinkReport, len(c.Targets))
	r.States = make([]plan.State, len(c.Targets))
	each(len(c.Targets), c.Parallelism, func(i int) {
		t := c.Targets[i]
		r.Report.Sinks[i].Plan.Sink = t.Sink.Name()
		began := time.Now()
		// A read changes nothing, so one blocked where no context reaches
		// is left behind at the deadline rather than holding the lock.
		type read struct {
			st  plan.State
			err error
		}
		rd, ok := clock.Await(ctx, func() read {
			st, err := t.Sink.Current(ctx)
			return read{st, err}
		})
		st, err := rd.st, rd.err
		if !ok {
			err = fmt.Errorf("did not stop within %s (%w); left behind", clock.StopGrace, context.Cause(ctx))
		}
		c.log().Debug("sink read", "sink", t.Sink.Name(), "owned", len(st.Owned), "foreign", len(st.Foreign), "took", time.Since(began).Round(time.Millisecond), "err", err)
		if err != nil {
			r.Report.Sinks[i].Err = wrapSink("read", t.Sink.Name(), err)
			return
		}
		r.States[i] = st
	})
}

// needHeld names the sets retention reads held for: frozen sets, and
// sets with no memory (a cold start).
func needHeld(results []resolution.SetResult, st *state.File) map[string]bool {
	out := map[string]bool{}
	for _, r := range results {
		if r.Desired.Frozen || !st.Remembers(r.Spec.Name) {
			out[r.Spec.Name] = true
		}
	}
	return out
}

// held maps each set of need to the prefixes the sinks hold for it under
// our marker, the union over every sink read.
func held(states []plan.State, need map[string]bool) map[string][]netip.Prefix {
	// Counted first, so each set's prefixes are allocated once.
	sizes := map[string]int{}
	for _, st := range states {
		for _, e := range st.Owned {
			if need[e.Set] {
				sizes[e.Set]++
			}
		}
	}
	out := make(map[string][]netip.Prefix, len(sizes))
	for set, n := range sizes {
		out[set] = make([]netip.Prefix, 0, n)
	}
	for _, st := range states {
		for _, e := range st.Owned {
			if need[e.Set] {
				out[e.Set] = append(out[e.Set], e.Prefix)
			}
		}
	}
	for set, ps := range out {
		if !slices.IsSortedFunc(ps, plan.ComparePrefix) {
			slices.SortFunc(ps, plan.ComparePrefix)
		}
		out[set] = slices.Compact(ps)
	}
	return out
}

// known lists the sets defined and routed to t; nil when the definitions
// are unknown, which retires nothing.
func (c *Controller) known(t Target) []string {
	if c.Defined == nil {
		return nil
	}
	if len(t.Spec.Sets) == 0 {
		return slices.Sorted(maps.Keys(c.Defined))
	}
	out := []string{}
	for _, name := range t.Spec.Sets {
		if _, ok := c.Defined[name]; ok {
			out = append(out, name)
		}
	}
	return out
}

// warnReadBack says what the plans remove that no source asked to remove.
func (c *Controller) warnReadBack(r *Run) {
	for _, rep := range r.Report.Sinks {
		if n := len(rep.Plan.Unsafe); n > 0 {
			c.warn(fmt.Sprintf("%s: %d %s held under our marker fail validation and are removed: %s",
				rep.Plan.Sink, n, plural(n, "entry", "entries"), rep.Plan.Unsafe[0].Validate(c.Limits)))
		}
		if n := len(rep.Plan.Retired); n > 0 {
			c.warn(fmt.Sprintf("%s: %d %s of sets no longer defined or routed here are removed (%s)",
				rep.Plan.Sink, n, plural(n, "entry", "entries"), strings.Join(setNames(rep.Plan.Retired), ", ")))
		}
	}
}

func setNames(es []plan.Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, fmt.Sprintf("%q", e.Set))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// step is t's part of a run, with this run's policy, limits and guards.
func (c *Controller) step(t Target) sink.Step {
	return sink.Step{Spec: t.Spec, Sink: t.Sink, Policy: plan.Policies[c.Policy], Limits: c.Limits,
		Known: c.known(t), Guards: c.Guards, Force: c.Force}
}

// guard checks every plan (sink.Step.Check) and names every guard that
// refused.
func (c *Controller) guard(r *Run) {
	for i := range r.Report.Sinks {
		rep := &r.Report.Sinks[i]
		if rep.Err == nil {
			rep.Err = c.step(c.Targets[i]).Check(rep.Plan)
		}
		if g, ok := plan.RefusedBy(rep.Err); ok {
			r.Refused = append(r.Refused, g)
		}
	}
}

// apply applies every plan that has changes and was read cleanly.
func (c *Controller) apply(ctx context.Context, r *Run) {
	each(len(c.Targets), c.Parallelism, func(i int) {
		rep := &r.Report.Sinks[i]
		if rep.Err != nil || !rep.Plan.HasChanges() {
			return
		}
		began := time.Now()
		err := c.Targets[i].Sink.Apply(ctx, rep.Plan)
		c.log().Debug("sink write", "sink", rep.Plan.Sink, "add", len(rep.Plan.Add), "remove", len(rep.Plan.Remove), "took", time.Since(began).Round(time.Millisecond), "err", err)
		if err != nil {
			rep.Err = wrapSink("apply", rep.Plan.Sink, err)
			return
		}
		rep.Applied = true
	})
}

// end decides the outcome, alerts and saves the state unless nothing was
// meant to change, and hands the run to Finish.
func (c *Controller) end(ctx, sinkCtx context.Context, r *Run, st *state.File, dryRun bool, sourceErr error) {
	markDeadline(sinkCtx, c.RunTimeout, r.Report.Sinks)
	r.Err = outcome(r.Report, sourceErr, c.DetailedExitcode)
	if !dryRun {
		if c.Alerts != nil {
			c.Alerts.Observe(ctx, st, r)
		}
		if err := c.store().Save(ctx, st); err != nil {
			r.Err = errors.Join(r.Err, err)
		}
	}
	r.End = c.Now()
	if c.Summary != nil {
		c.Summary.Finish(r)
	}
}

// deadlineError says the run's own deadline ended a sink call, which is
// otherwise a bare "context deadline exceeded" deep in an SDK error.
type deadlineError struct {
	timeout time.Duration
	err     error
}

func (e *deadlineError) Error() string {
	return fmt.Sprintf("run deadline exceeded (--run-timeout %s): %s", e.timeout, e.err)
}
func (e *deadlineError) Unwrap() error { return e.err }

// markDeadline names the run deadline in the sink errors it caused.
func markDeadline(ctx context.Context, timeout time.Duration, reports []SinkReport) {
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return
	}
	for i := range reports {
		if reports[i].Err != nil {
			reports[i].Err = &deadlineError{timeout: timeout, err: reports[i].Err}
		}
	}
}

// each runs fn(0..n-1) with at most limit at once.
func each(n, limit int, fn func(int)) {
	if limit < 1 {
		limit = 1
	}
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			fn(i)
		}()
	}
	wg.Wait()
}

// ChangesError is the outcome of a run with changes, pending or applied,
// under --detailed-exitcode; it is not a failure and prints nothing.
type ChangesError struct{}

func (ChangesError) Error() string { return "changes present" }

// outcome maps the run to an error for the exit code: failures first, then
// changes when --detailed-exitcode asked for them.
func outcome(r Report, sourceErr error, detailed bool) error {
	errs := []error{sourceErr}
	changes := false
	for _, s := range r.Sinks {
		errs = append(errs, s.Err)
		changes = changes || s.Plan.HasChanges()
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if detailed && changes {
		return ChangesError{}
	}
	return nil
}

func (c *Controller) log() *slog.Logger {
	if c.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Log
}
