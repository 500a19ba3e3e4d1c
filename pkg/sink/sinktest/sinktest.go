// Package sinktest is the contract every sink must pass. A sink package
// supplies a Harness: a way to make a fresh, empty target, open sinks on
// it, and reach into it behind the sink's back (inject entries, break it
// by hand, make a write fail, make it foreign). Run then plays the same
// runs against it that the sync command would, and checks what the target
// holds afterwards, not only what the plan said.
package sinktest

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
)

// Case names one contract test; they are the subtest names.
type Case string

const (
	NoChangeRerun   Case = "first-sync-then-no-change-rerun"
	ExactShrink     Case = "exact-shrink"
	FrozenUntouched Case = "frozen-set-untouched"
	FrozenShared    Case = "frozen-set-keeps-shared-address"
	ForeignCovering Case = "foreign-entries-untouched-and-covering"
	OwnedUnsafe     Case = "owned-unsafe-entry-removed"
	UnknownSet      Case = "unknown-set-entry-removed"
	DriftRepaired   Case = "hand-drift-repaired"
	PartialFailure  Case = "failure-part-way-converges"
	ForeignTarget   Case = "foreign-target-refused-untouched"
	// UnreadableRecord: issue 20 item 3.
	UnreadableRecord Case = "unreadable-ownership-record"
	HostileStrings   Case = "hostile-strings-refused"
	// FileDirectory: a sink that writes files creates their missing
	// directory, and a failed write names the file, not a temp file.
	FileDirectory Case = "file-directory-created-errors-name-the-file"
)

// Cases lists every case in the order Run plays them.
var Cases = []Case{NoChangeRerun, ExactShrink, FrozenUntouched, FrozenShared, ForeignCovering,
	OwnedUnsafe, UnknownSet, DriftRepaired, PartialFailure, ForeignTarget, UnreadableRecord, HostileStrings,
	FileDirectory}

// Harness is what a sink package hands to Run.
type Harness struct {
	// Type is the registry's sink type this harness proves, e.g.
	// "nftables"; the registry test checks every type has one.
	Type string
	// New makes a fresh, empty target for one case; clean it up with
	// t.Cleanup.
	New func(t testing.TB) *Target
	// Skip names cases that do not apply to this sink, each with the
	// reason, which the test output shows. A case whose hook is missing
	// and is not listed here fails.
	Skip map[Case]string
	// Expect marks cases, or "case/variant" for one foreign target,
	// known to fail today, with the issue item being fixed. They run;
	// a failure is reported as a skip naming the item, and a pass fails,
	// so the mark is removed once the fix lands.
	Expect map[string]string
	// Parallel runs the cases in parallel (each has its own target).
	Parallel bool
}

// Target is one place a sink writes to, with hooks that bypass the sink.
type Target struct {
	// Open returns a sink on the target. Every run opens a new one, as
	// every sync is a new process.
	Open func(t testing.TB) sink.Sink
	// Writes counts the changes made to the target so far (commands that
	// change the kernel, files replaced, mutating API calls). It must grow
	// with every apply that changes something.
	Writes func(t testing.TB) int
	// Snapshot renders everything the target holds, ours and not ours,
	// without names that differ between targets (paths, namespaces, ids),
	// so two targets synced alike compare equal.
	Snapshot func(t testing.TB) string
	// InjectOwned puts e into the target as the sink would have written
	// it, marker included, without a plan.
	InjectOwned func(t testing.TB, e plan.Entry)
	// InjectForeign puts a rule allowing e into the target without our
	// marker (e.Set is empty).
	InjectForeign func(t testing.TB, e plan.Entry)
	// Drift breaks the target by hand the way an operator might (flush a
	// set, delete a rule).
	Drift func(t testing.TB)
	// FailNext makes the next apply fail part way: after it has changed
	// something, where the sink changes things in more than one step.
	FailNext func(t testing.TB)
	// Unlabel makes the ownership record of what the target holds
	// unreadable the way a hand edit would (a WAF description rewritten
	// in the console, a rule comment or manifest label edited), leaving
	// the entries themselves in place.
	Unlabel func(t testing.TB)
	// Tamper holds ways to make the target one the sink must refuse,
	// by name; each runs as its own subtest.
	Tamper map[string]func(t testing.TB)
	// Hostile opens a sink on the target with s in one free-text setting
	// it takes, by the setting's key (owner_id, comment, tags...); the
	// sink must refuse every string that could end a line, at open or
	// at sync, and write nothing.
	Hostile map[string]func(t testing.TB, s string) (sink.Sink, error)
	// OpenIn opens a sink set up as Open's but with every file it writes
	// in dir, which may be missing or read-only; the sink is a
	// sink.FileWriter. Only sinks that write files have it.
	OpenIn func(t testing.TB, dir string) sink.Sink
	// IngressOnly plays every set of the suite as an ingress set, for a
	// sink that holds only who may connect in and refuses egress sets
	// (an Ingress allow-list annotation).
	IngressOnly bool
}

// sets is desired as tg takes it.
func (tg *Target) sets(desired []plan.DesiredSet) []plan.DesiredSet {
	if !tg.IngressOnly {
		return desired
	}
	out := make([]plan.DesiredSet, len(desired))
	for i, d := range desired {
		d.Direction = plan.Ingress
		out[i] = d
	}
	return out
}

// need maps a case to the hooks it uses.
func need(c Case, tg *Target) []string {
	var missing []string
	check := func(ok bool, name string) {
		if !ok {
			missing = append(missing, name)
		}
	}
	check(tg.Open != nil, "Open")
	check(tg.Writes != nil, "Writes")
	check(tg.Snapshot != nil, "Snapshot")
	switch c {
	case ForeignCovering:
		check(tg.InjectForeign != nil, "InjectForeign")
	case OwnedUnsafe, UnknownSet:
		check(tg.InjectOwned != nil, "InjectOwned")
	case DriftRepaired:
		check(tg.Drift != nil, "Drift")
	case PartialFailure:
		check(tg.FailNext != nil, "FailNext")
	case UnreadableRecord:
		check(tg.Unlabel != nil, "Unlabel")
	case ForeignTarget:
		check(len(tg.Tamper) > 0, "Tamper")
	case HostileStrings:
		check(len(tg.Hostile) > 0, "Hostile")
	case FileDirectory:
		check(tg.OpenIn != nil, "OpenIn")
	}
	return missing
}

// Run plays every case against fresh targets from h.
func Run(t *testing.T, h Harness) {
	t.Helper()
	if h.Type == "" || h.New == nil {
		t.Fatal("sinktest: harness needs Type and New")
	}
	known := map[string]bool{}
	for _, c := range Cases {
		known[string(c)] = true
	}
	for k := range h.Skip {
		if !known[string(k)] {
			t.Errorf("sinktest: Skip names unknown case %q", k)
		}
	}
	for k := range h.Expect {
		if c, _, _ := strings.Cut(k, "/"); !known[c] {
			t.Errorf("sinktest: Expect names unknown case %q", k)
		}
	}
	for _, c := range Cases {
		t.Run(string(c), func(t *testing.T) {
			if why, ok := h.Skip[c]; ok {
				t.Skipf("does not apply to %s: %s", h.Type, why)
			}
			if h.Parallel {
				t.Parallel()
			}
			if c == ForeignTarget {
				runTampers(t, h)
				return
			}
			guard(t, h, string(c), func(t testing.TB) {
				tg := h.New(t)
				if missing := need(c, tg); len(missing) > 0 {
					t.Fatalf("harness %s has no %s hook for this case and gives no reason to skip it", h.Type, strings.Join(missing, ", "))
				}
				cases[c](t, tg, h.New)
			})
		})
	}
}

// runTampers runs the foreign-target case once per way to tamper.
func runTampers(t *testing.T, h Harness) {
	probe := h.New(t)
	if missing := need(ForeignTarget, probe); len(missing) > 0 {
		t.Fatalf("harness %s has no %s hook for this case and gives no reason to skip it", h.Type, strings.Join(missing, ", "))
	}
	names := make([]string, 0, len(probe.Tamper))
	for n := range probe.Tamper {
		names = append(names, n)
	}
	slices.Sort(names)
	for i, name := range names {
		t.Run(name, func(t *testing.T) {
			guard(t, h, string(ForeignTarget)+"/"+name, func(t testing.TB) {
				tg := probe
				if i > 0 {
					tg = h.New(t)
				}
				foreignTarget(t, tg, tg.Tamper[name])
			})
		})
	}
}

// guard runs fn, turning a known failure into a listed skip.
func guard(t *testing.T, h Harness, key string, fn func(t testing.TB)) {
	item, expected := h.Expect[key]
	if !expected {
		fn(t)
		return
	}
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(r)
	}()
	<-done
	switch {
	case r.skip != "":
		t.Skip(r.skip)
	case r.failed:
		for _, m := range r.msgs {
			t.Log("expected failure: " + m)
		}
		t.Skipf("expected failure until %s is fixed; it failed as above", item)
	default:
		t.Errorf("%s now passes for %s: remove it from the harness's Expect (it was marked for %s)", key, h.Type, item)
	}
}

// recorder is a testing.TB whose failures are collected, not reported.
type recorder struct {
	testing.TB
	mu     sync.Mutex
	failed bool
	msgs   []string
	skip   string
}

func (r *recorder) record(msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed = true
	if msg != "" {
		r.msgs = append(r.msgs, strings.TrimSuffix(msg, "\n"))
	}
}

func (r *recorder) Fail()                     { r.record("") }
func (r *recorder) FailNow()                  { r.record(""); runtime.Goexit() }
func (r *recorder) Error(args ...any)         { r.record(fmt.Sprintln(args...)) }
func (r *recorder) Errorf(f string, a ...any) { r.record(fmt.Sprintf(f, a...)) }
func (r *recorder) Fatal(args ...any)         { r.record(fmt.Sprintln(args...)); runtime.Goexit() }
func (r *recorder) Fatalf(f string, a ...any) { r.record(fmt.Sprintf(f, a...)); runtime.Goexit() }
func (r *recorder) Skip(args ...any) {
	r.skip = strings.TrimSpace(fmt.Sprintln(args...))
	runtime.Goexit()
}
func (r *recorder) Skipf(f string, a ...any) { r.skip = fmt.Sprintf(f, a...); runtime.Goexit() }
func (r *recorder) SkipNow()                 { r.skip = "skipped"; runtime.Goexit() }
func (r *recorder) Failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failed
}

// stepFor is s's part of a run as the sync command makes it (sink.Step),
// with the default limits and max-delete guard. The sets routed to this
// sink are the ones desired, frozen ones included: an owned entry of any
// other set is retired.
func stepFor(s sink.Sink, desired []plan.DesiredSet) sink.Step {
	known := make([]string, len(desired))
	for i, ds := range desired {
		known[i] = ds.Name
	}
	return sink.Step{Sink: s, Limits: plan.DefaultLimits, Known: known, Guards: plan.DefaultRunGuards}
}

// planFor is the plan the sync command would make for s. The error is
// Shape's refusal; the plan is made anyway, as the sync command shows it.
func planFor(s sink.Sink, desired []plan.DesiredSet, st plan.State) (plan.SinkPlan, error) {
	return stepFor(s, desired).Plan(desired, st)
}

// cycle is one sync of the target: a new sink reads, plans, checks and
// applies when there is something to change. The error is the first of
// Current, Check and Apply.
func cycle(t testing.TB, tg *Target, desired []plan.DesiredSet) (plan.SinkPlan, error) {
	t.Helper()
	desired = tg.sets(desired)
	return Sync(context.Background(), stepFor(tg.Open(t), desired), desired)
}

func mustCycle(t testing.TB, tg *Target, desired []plan.DesiredSet) plan.SinkPlan {
	t.Helper()
	p, err := cycle(t, tg, desired)
	if err != nil {
		t.Fatalf("sync: %v", err)
	}
	return p
}

// current reads the target with a new sink.
func current(t testing.TB, tg *Target) plan.State {
	t.Helper()
	st, err := tg.Open(t).Current(context.Background())
	if err != nil {
		t.Fatalf("current: %v", err)
	}
	return st
}

// wanted is what the sink would hold for desired, in its own shape.
func wanted(t testing.TB, tg *Target, desired []plan.DesiredSet) []plan.Entry {
	t.Helper()
	s := tg.Open(t)
	st, err := s.Current(context.Background())
	if err != nil {
		t.Fatalf("current: %v", err)
	}
	// Everything desired, shaped by what the sink read.
	p, _ := planFor(s, tg.sets(desired), plan.State{Snapshot: st.Snapshot})
	return p.Result()
}
