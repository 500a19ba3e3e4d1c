package controller

import (
	"context"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pdsafelist/pdsafelist/pkg/config"
	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/resolution"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/source"
	"github.com/pdsafelist/pdsafelist/pkg/state"
)

// memSink holds entries in memory; Apply takes a minute of the fake clock.
type memSink struct {
	name  string
	held  []plan.Entry
	clock *time.Time
}

func (s *memSink) Name() string { return s.name }
func (s *memSink) Current(context.Context) (plan.State, error) {
	return plan.State{Owned: s.held}, nil
}
func (s *memSink) Apply(_ context.Context, p plan.SinkPlan) error {
	*s.clock = s.clock.Add(time.Minute)
	s.held = p.Result()
	return nil
}

func hooks(prefix string) plan.Entry {
	return plan.Entry{Set: "hooks", Prefix: netip.MustParsePrefix(prefix), Direction: plan.Ingress, Protocol: plan.TCP, Port: 443}
}

// hooksSpec is the one set the test controllers define.
var hooksSpec = config.SetSpec{Name: "hooks", Direction: "ingress", Protocol: "tcp", Ports: []uint16{443}}

func newController(t *testing.T, clock *time.Time, sinks ...sink.Sink) *Controller {
	shape := hooksSpec.Desired()
	c := &Controller{Defined: map[string]*plan.DesiredSet{"hooks": &shape}, Policy: "sync", Limits: plan.DefaultLimits,
		Guards: plan.DefaultRunGuards, Parallelism: 2, RunTimeout: time.Minute * 10,
		StatePath: filepath.Join(t.TempDir(), "state.json"), Now: func() time.Time { return *clock }}
	for _, s := range sinks {
		c.Targets = append(c.Targets, Target{Spec: sink.Spec{Type: "mem"}, Sink: s})
	}
	return c
}

// Live and saved runs report the time the whole cycle took, applies
// included.
func TestRunDurationCoversApply(t *testing.T) {
	clock := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	s := &memSink{name: "mem:a", clock: &clock}
	c := newController(t, &clock, s)
	live := Live{Resolve: func(context.Context) ([]resolution.SetResult, error) {
		spec := hooksSpec
		return []resolution.SetResult{{Spec: spec, Desired: plan.DesiredSet{Name: "hooks", Direction: plan.Ingress, Protocol: plan.TCP,
			Ports: []uint16{443}, Prefixes: []netip.Prefix{netip.MustParsePrefix("193.0.2.10/32")}}}}, nil
	}}
	var saved *SavedPlan
	live.DryRun, live.Planned = true, func(r *Run) error {
		var err error
		saved, err = NewSavedPlan(clock, "sync", c.Targets, r)
		return err
	}
	if _, err := c.RunOnce(context.Background(), live); err != nil {
		t.Fatal(err)
	}
	r, err := c.ApplySaved(context.Background(), saved)
	if err != nil {
		t.Fatal(err)
	}
	if d := r.End.Sub(r.Start); d != time.Minute || !r.Report.Sinks[0].Applied {
		t.Errorf("saved run took %s (applied %v), want the 1m apply", d, r.Report.Sinks[0].Applied)
	}
}

// held is the union of what every sink holds under our marker, per set.
func TestHeldUnionsSinks(t *testing.T) {
	a := plan.State{Owned: []plan.Entry{hooks("193.0.2.10/32"), hooks("193.0.2.11/32")}}
	b := plan.State{Owned: []plan.Entry{hooks("193.0.2.11/32"), {Set: "pl", Prefix: netip.MustParsePrefix("44.1.2.0/24")}}}
	got := held([]plan.State{a, b, {}}, map[string]bool{"hooks": true, "pl": true})
	want := map[string][]netip.Prefix{
		"hooks": {netip.MustParsePrefix("193.0.2.10/32"), netip.MustParsePrefix("193.0.2.11/32")},
		"pl":    {netip.MustParsePrefix("44.1.2.0/24")},
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(x, y netip.Prefix) bool { return x == y })); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	// Only the sets retention reads it for (frozen or with no memory).
	got = held([]plan.State{a, b, {}}, map[string]bool{"pl": true})
	delete(want, "hooks")
	if diff := cmp.Diff(want, got, cmp.Comparer(func(x, y netip.Prefix) bool { return x == y })); diff != "" {
		t.Errorf("only pl needed: (-want +got):\n%s", diff)
	}
}

// Entry validation and the sinks' marker parser agree on set names, so
// nothing read back as ours can name a set a plan could not hold.
func TestSetNameRulesAgree(t *testing.T) {
	for _, name := range []string{"webhooks", "a", "a_1", "x2345678901234567890123456789012", "x234567890123456789012345678901",
		"", "Hooks", "1set", "a-b", "a b", "a\nb", "webhooks:x", "ünï"} {
		_, marker := sink.ParseMarker("", sink.Marker("", name))
		if got := plan.ValidSetName(name); got != marker {
			t.Errorf("%q: plan.ValidSetName %v, sink.ParseMarker %v", name, got, marker)
		}
	}
}

// Once retention has read them, the sources' addresses are let go unless
// the output prints them; their count stays for the report.
func TestRunReleasesSourceLists(t *testing.T) {
	for _, keep := range []bool{false, true} {
		clock := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
		s := &memSink{name: "mem:a", clock: &clock}
		c := newController(t, &clock, s)
		p := netip.MustParsePrefix("193.0.2.10/32")
		live := Live{SourceLists: keep, Resolve: func(context.Context) ([]resolution.SetResult, error) {
			return []resolution.SetResult{{Spec: hooksSpec,
				Sources: []source.Result{{Kind: source.KindStatic, Name: "static", Addresses: []source.Address{{Prefix: p}}}},
				Desired: plan.DesiredSet{Name: "hooks", Direction: plan.Ingress, Protocol: plan.TCP, Ports: []uint16{443}, Prefixes: []netip.Prefix{p}}}}, nil
		}}
		r, err := c.RunOnce(context.Background(), live)
		if err != nil {
			t.Fatal(err)
		}
		src := r.Report.Sets[0].Sources[0]
		if got := src.Addresses != nil; got != keep || src.Len() != 1 {
			t.Errorf("SourceLists %v: addresses kept %v, Len %d; want kept %v, Len 1", keep, got, src.Len(), keep)
		}
		// Retention read them first: the state remembers the address.
		st, err := state.Load(c.StatePath)
		if err != nil {
			t.Fatal(err)
		}
		if !st.Remembers("hooks") || st.Sets["hooks"].Addresses()[0].Prefix != p {
			t.Errorf("SourceLists %v: state does not remember %s: %+v", keep, p, st.Sets["hooks"])
		}
	}
}

// readingSink sees, when it is read, whether the sources' lists are still
// held.
type readingSink struct {
	memSink
	results   *[]resolution.SetResult
	heldLists []bool
}

func (s *readingSink) Current(ctx context.Context) (plan.State, error) {
	s.heldLists = append(s.heldLists, (*s.results)[0].Sources[0].Addresses != nil)
	return s.memSink.Current(ctx)
}

// Issue 24: a run whose sets all have memory lets the sources' lists go
// before the sinks are read, so the two are never held at once; a set
// with no memory (the first run, a lost state) still has the sinks read
// first, for what they hold stands in for that memory.
func TestListsReleasedBeforeReadsWhenRemembered(t *testing.T) {
	clock := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	var results []resolution.SetResult
	s := &readingSink{memSink: memSink{name: "mem:a", clock: &clock}, results: &results}
	c := newController(t, &clock, s)
	p := netip.MustParsePrefix("193.0.2.10/32")
	live := Live{Resolve: func(context.Context) ([]resolution.SetResult, error) {
		results = []resolution.SetResult{{Spec: hooksSpec,
			Sources: []source.Result{{Kind: source.KindStatic, Name: "static", Addresses: []source.Address{{Prefix: p}}}},
			Desired: plan.DesiredSet{Name: "hooks", Direction: plan.Ingress, Protocol: plan.TCP, Ports: []uint16{443}, Prefixes: []netip.Prefix{p}}}}
		return results, nil
	}}
	for range 2 {
		if _, err := c.RunOnce(context.Background(), live); err != nil {
			t.Fatal(err)
		}
		clock = clock.Add(time.Minute)
	}
	if want := []bool{true, false}; !cmp.Equal(want, s.heldLists) {
		t.Errorf("lists held when the sink was read: %v; want %v (first run: no memory yet)", s.heldLists, want)
	}
	if len(s.held) != 1 || s.held[0].Prefix != p {
		t.Errorf("sink holds %v", s.held)
	}
}
