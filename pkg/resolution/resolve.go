// Package resolution runs every source of every selected set at once and turns
// the answers into desired sets, freezing any set that cannot be trusted.
package resolution

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/pdsafelist/pdsafelist/pkg/clock"
	"github.com/pdsafelist/pdsafelist/pkg/config"
	"github.com/pdsafelist/pdsafelist/pkg/oneline"
	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/source"
)

// SetResult is one set's sources and the desired set built from them.
type SetResult struct {
	Spec    config.SetSpec
	Sources []source.Result
	Desired plan.DesiredSet
	// Retained are prefixes no source returned this run that are kept
	// because they were seen within max(TTL, grace).
	Retained []netip.Prefix
	// StaleSince is when a frozen set's sources first failed in a row.
	StaleSince time.Time
	// Err says why the set is frozen; nil when it is not.
	Err error
}

// Builder makes the sources of one set.
type Builder func(spec config.SetSpec) []source.Source

// Run resolves all sets concurrently. Every source of every set is queried
// in parallel, so the whole run costs about one round trip.
func Run(ctx context.Context, specs []config.SetSpec, build Builder, limits plan.Limits) []SetResult {
	out := make([]SetResult, len(specs))
	var wg sync.WaitGroup
	for i, spec := range specs {
		srcs := build(spec)
		out[i] = SetResult{Spec: spec, Sources: make([]source.Result, len(srcs))}
		for j, src := range srcs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				out[i].Sources[j] = awaitOne(ctx, src)
			}()
		}
	}
	wg.Wait()
	collectBeforeUnion(out)
	for i := range out {
		out[i].Desired, out[i].Err = desired(out[i].Spec, out[i].Sources, limits)
	}
	return out
}

// collectBeforeUnion collects the sources' garbage (response bodies,
// read buffers, sort keys) and returns its pages to the OS before the
// unions allocate their results, once the answers are large enough to be
// worth it. A union's result is one block (32 bytes a prefix, 32 MB at a
// million) that the garbage's scattered free pages rarely hold, so without
// this it grew the heap by its whole size on top of them: 105 MB of heap
// for 72 MB live. A collection alone leaves the peak to chance (the block
// fits the freed pages in some runs, not in others); returned, the pages
// leave RSS and the block costs only itself.
func collectBeforeUnion(results []SetResult) {
	n := 0
	for _, r := range results {
		for _, s := range r.Sources {
			n += len(s.Addresses)
		}
	}
	if n >= collectAbove {
		debug.FreeOSMemory()
	}
}

// collectAbove is the number of addresses (4 MB of lists) below which a
// run's garbage is not worth a collection.
const collectAbove = 100_000

// awaitOne resolves src, or fails it once the deadline has passed and it
// has not stopped: a source blocked where no context reaches (a system
// call on a hung file) must not hold the run and its lock.
func awaitOne(ctx context.Context, src source.Source) source.Result {
	res, ok := clock.Await(ctx, func() source.Result { return resolveOne(ctx, src) })
	if !ok {
		res = source.Result{Kind: src.Kind(), Name: src.Name(),
			Err: fmt.Errorf("%s %s: did not stop within %s (%v); left behind", src.Kind(), src.Name(), clock.StopGrace, context.Cause(ctx))}
	}
	return res
}

// resolveOne shields the run from a misbehaving source.
func resolveOne(ctx context.Context, src source.Source) (res source.Result) {
	defer func() {
		if r := recover(); r != nil {
			res = source.Result{Kind: src.Kind(), Name: src.Name(), Err: fmt.Errorf("%s %s: internal error: %v", src.Kind(), src.Name(), r)}
		}
	}()
	res = src.Resolve(ctx)
	if res.Kind == "" {
		res.Kind = src.Kind()
	}
	if res.Name == "" {
		res.Name = src.Name()
	}
	return res
}

// desired validates every address and freezes the set when any source
// failed, was empty or offered an unsafe prefix: applying a partial answer
// would remove addresses the missing source still vouches for.
func desired(spec config.SetSpec, results []source.Result, limits plan.Limits) (plan.DesiredSet, error) {
	d := spec.Desired()
	limits = limits.For(spec.Name)
	var lists [][]source.Address
	var reasons []error
	for i, r := range results {
		if r.Err != nil {
			reasons = append(reasons, r.Err)
			continue
		}
		if len(r.Addresses) == 0 {
			err := fmt.Errorf("%s %s: no addresses", r.Kind, r.Name)
			results[i].Err = &EmptySourceError{Err: err}
			reasons = append(reasons, results[i].Err)
			continue
		}
		if err := checkAll(limits, r.Addresses); err != nil {
			results[i].Err = &SourceError{Kind: r.Kind, Name: r.Name, Err: err}
			reasons = append(reasons, results[i].Err)
		}
		if results[i].Err == nil {
			lists = append(lists, r.Addresses)
		}
	}
	if len(results) == 0 {
		reasons = append(reasons, fmt.Errorf("set %s: no sources", spec.Name))
	}
	if len(reasons) == 0 {
		agg, err := union(lists)
		if err != nil {
			reasons = append(reasons, fmt.Errorf("set %s: %w", spec.Name, err))
		} else {
			d.Prefixes = agg
		}
	}
	if len(reasons) == 0 && spec.MinEntries > 0 && len(d.Prefixes) < spec.MinEntries {
		reasons = append(reasons, &MinEntriesError{Set: spec.Name, Got: len(d.Prefixes), Min: spec.MinEntries})
	}
	if len(reasons) == 0 {
		return d, nil
	}
	err := errors.Join(reasons...)
	d.Frozen = true
	d.Prefixes = nil
	d.Reason = oneline.Error(err)
	return d, err
}

// shownUnsafe is how many refused prefixes an error names; a vendor list
// can have hundreds.
const shownUnsafe = 3

// checkAll checks every address, so the error can say how many a list
// holds that the limits refuse, not only the first.
func checkAll(limits plan.Limits, addrs []source.Address) error {
	var first []error
	n := 0
	for _, a := range addrs {
		if err := limits.Check(a.Prefix); err != nil {
			n++
			if len(first) < shownUnsafe {
				first = append(first, err)
			}
		}
	}
	switch n {
	case 0:
		return nil
	case 1:
		return first[0]
	}
	return &UnsafePrefixesError{Count: n, First: first}
}

// UnsafePrefixesError is a source's refused prefixes: their count and
// the first few. It unwraps to the first, a *plan.UnsafePrefixError.
type UnsafePrefixesError struct {
	Count int
	First []error
}

func (e *UnsafePrefixesError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d unsafe prefixes: ", e.Count)
	for i, err := range e.First {
		if i > 0 {
			b.WriteString("; ")
		}
		msg := err.Error()
		var pe *plan.UnsafePrefixError
		if errors.As(err, &pe) {
			msg = pe.Prefix.String() + ": " + pe.Reason
		}
		b.WriteString(msg)
	}
	if more := e.Count - len(e.First); more > 0 {
		fmt.Fprintf(&b, "; and %d more", more)
	}
	return b.String()
}

func (e *UnsafePrefixesError) Unwrap() error { return e.First[0] }

// SourceError wraps a source's validation failure with its name.
type SourceError struct {
	Kind source.Kind
	Name string
	Err  error
}

func (e *SourceError) Error() string { return fmt.Sprintf("%s %s: %v", e.Kind, e.Name, e.Err) }
func (e *SourceError) Unwrap() error { return e.Err }

// EmptySourceError marks a source that answered with nothing.
type EmptySourceError struct{ Err error }

func (e *EmptySourceError) Error() string { return e.Err.Error() }
func (e *EmptySourceError) Unwrap() error { return e.Err }

// MinEntriesError says a set resolved to fewer prefixes than configured.
type MinEntriesError struct {
	Set      string
	Got, Min int
}

func (e *MinEntriesError) Error() string {
	return fmt.Sprintf("set %s: %d prefixes, below min_entries %d", e.Set, e.Got, e.Min)
}

func (e *MinEntriesError) RefusedBy() plan.Guard { return plan.GuardMinEntries }

// Errors collects the failures that froze sets, for the exit code.
func Errors(results []SetResult) error {
	var errs []error
	for _, r := range results {
		if r.Err != nil {
			errs = append(errs, r.Err)
		}
	}
	return errors.Join(errs...)
}

// Desired returns the desired sets of results, in order.
func Desired(results []SetResult) []plan.DesiredSet {
	out := make([]plan.DesiredSet, len(results))
	for i, r := range results {
		out[i] = r.Desired
	}
	return out
}
