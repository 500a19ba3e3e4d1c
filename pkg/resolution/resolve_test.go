package resolution

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pdsafelist/pdsafelist/pkg/config"
	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/source"
	"github.com/pdsafelist/pdsafelist/pkg/state"
)

type fakeSource struct {
	name  string
	addrs []string
	err   error
	panic bool
}

func (f fakeSource) Kind() source.Kind { return "fake" }
func (f fakeSource) Name() string      { return f.name }
func (f fakeSource) Resolve(context.Context) source.Result {
	if f.panic {
		panic("boom")
	}
	r := source.Result{Kind: "fake", Name: f.name, Err: f.err}
	for _, a := range f.addrs {
		r.Addresses = append(r.Addresses, source.Address{Prefix: netip.MustParsePrefix(a)})
	}
	return r
}

func run(t *testing.T, spec config.SetSpec, srcs ...source.Source) SetResult {
	t.Helper()
	res := Run(context.Background(), []config.SetSpec{spec}, func(config.SetSpec) []source.Source { return srcs }, plan.DefaultLimits)
	if len(res) != 1 {
		t.Fatalf("got %d results", len(res))
	}
	return res[0]
}

var spec = config.SetSpec{Name: "api", Direction: "egress", Protocol: "tcp", Ports: []uint16{443}}

func TestRunUnionsAndAggregates(t *testing.T) {
	r := run(t, spec,
		fakeSource{name: "a", addrs: []string{"193.0.2.0/32", "2001:db9::1/128"}},
		fakeSource{name: "b", addrs: []string{"193.0.2.1/32", "193.0.2.0/32"}})
	if r.Err != nil || r.Desired.Frozen {
		t.Fatalf("unexpected failure: %v", r.Err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("193.0.2.0/31"), netip.MustParsePrefix("2001:db9::1/128")}
	if diff := cmp.Diff(want, r.Desired.Prefixes, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("prefixes (-want +got):\n%s", diff)
	}
}

// Any bad source freezes the whole set: a partial answer would remove what
// the missing source still vouches for.
func TestRunFreezes(t *testing.T) {
	good := fakeSource{name: "good", addrs: []string{"193.0.2.1/32"}}
	tests := []struct {
		name    string
		bad     source.Source
		reason  string
		unsafe  bool
		isEmpty bool
	}{
		{"failed", fakeSource{name: "bad", err: errors.New("fake bad: timeout")}, "fake bad: timeout", false, false},
		{"empty", fakeSource{name: "bad"}, "fake bad: no addresses", false, true},
		{"hijacked", fakeSource{name: "bad", addrs: []string{"0.0.0.0/0"}}, "unsafe prefix 0.0.0.0/0", true, false},
		{"private", fakeSource{name: "bad", addrs: []string{"193.0.2.9/32", "10.0.0.1/32"}}, "Private-Use 10.0.0.0/8 (RFC 1918)", true, false},
		// Non-global ranges of the IANA special-purpose registries freeze
		// the set exactly like private ones (issue 11 item 6).
		{"TEST-NET-1 answer", fakeSource{name: "bad", addrs: []string{"192.0.2.1/32"}}, "Documentation (TEST-NET-1)", true, false},
		{"benchmarking answer", fakeSource{name: "bad", addrs: []string{"198.18.0.1/32"}}, "Benchmarking", true, false},
		{"TEST-NET-2 answer", fakeSource{name: "bad", addrs: []string{"198.51.100.20/32"}}, "Documentation (TEST-NET-2)", true, false},
		{"TEST-NET-3 answer", fakeSource{name: "bad", addrs: []string{"203.0.113.5/32"}}, "Documentation (TEST-NET-3)", true, false},
		{"IPv6 documentation entry", fakeSource{name: "bad", addrs: []string{"2001:db9::1/128", "2001:db8::1/128"}}, "Documentation 2001:db8::/32", true, false},
		{"6to4 entry", fakeSource{name: "bad", addrs: []string{"2002:a00:1::/48"}}, "6to4 2002::/16", true, false},
		{"Teredo entry", fakeSource{name: "bad", addrs: []string{"2001:0:4136:e378:8000:63bf:3fff:fdd2/128"}}, "TEREDO 2001::/32", true, false},
		{"too broad", fakeSource{name: "bad", addrs: []string{"52.0.0.0/16"}}, "broader than /24 (min_ipv4_prefix)", true, false},
		{"panics", fakeSource{name: "bad", panic: true}, "internal error: boom", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, spec, good, tt.bad)
			if !r.Desired.Frozen || r.Err == nil {
				t.Fatalf("set not frozen: %+v", r.Desired)
			}
			if len(r.Desired.Prefixes) != 0 {
				t.Errorf("frozen set carries prefixes %v", r.Desired.Prefixes)
			}
			if !strings.Contains(r.Desired.Reason, tt.reason) || strings.Contains(r.Desired.Reason, "\n") {
				t.Errorf("reason %q lacks %q or is multi-line", r.Desired.Reason, tt.reason)
			}
			var pe *plan.UnsafePrefixError
			if errors.As(r.Err, &pe) != tt.unsafe {
				t.Errorf("unsafe = %v, want %v (%v)", !tt.unsafe, tt.unsafe, r.Err)
			}
			var ee *EmptySourceError
			if errors.As(r.Err, &ee) != tt.isEmpty {
				t.Errorf("empty = %v, want %v", !tt.isEmpty, tt.isEmpty)
			}
			if r.Sources[1].Err == nil {
				t.Error("the offending source is not marked failed")
			}
		})
	}
}

func TestRunMinEntries(t *testing.T) {
	s := spec
	s.MinEntries = 2
	r := run(t, s, fakeSource{name: "a", addrs: []string{"193.0.2.1/32"}})
	var me *MinEntriesError
	if !r.Desired.Frozen || !errors.As(r.Err, &me) {
		t.Fatalf("want MinEntriesError and frozen, got %v", r.Err)
	}
}

func TestRunOtherSetsProceed(t *testing.T) {
	specs := []config.SetSpec{spec, {Name: "webhooks", Direction: "ingress", Protocol: "tcp", Ports: []uint16{443}}}
	res := Run(context.Background(), specs, func(s config.SetSpec) []source.Source {
		if s.Name == "api" {
			return []source.Source{fakeSource{name: "x", err: errors.New("down")}}
		}
		return []source.Source{fakeSource{name: "y", addrs: []string{"193.0.2.1/32"}}}
	}, plan.DefaultLimits)
	if !res[0].Desired.Frozen || res[1].Desired.Frozen {
		t.Fatalf("frozen = %v, %v; want true, false", res[0].Desired.Frozen, res[1].Desired.Frozen)
	}
	if err := Errors(res); err == nil || !strings.Contains(err.Error(), "down") {
		t.Errorf("Errors = %v", err)
	}
	if d := Desired(res); len(d) != 2 || d[1].Name != "webhooks" {
		t.Errorf("Desired = %+v", d)
	}
}

func TestRetainKeepsRecentAndMarksStale(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	st := state.New()
	api := spec
	hooks := config.SetSpec{Name: "webhooks", Direction: "ingress", Protocol: "tcp", Ports: []uint16{443}}
	build := func(addrs map[string][]string, fail bool) Builder {
		return func(s config.SetSpec) []source.Source {
			if fail && s.Name == "webhooks" {
				return []source.Source{fakeSource{name: "w", err: errors.New("down")}}
			}
			return []source.Source{fakeSource{name: s.Name, addrs: addrs[s.Name]}}
		}
	}
	specs := []config.SetSpec{api, hooks}
	first := Run(context.Background(), specs, build(map[string][]string{"api": {"193.0.2.1/32", "193.0.2.3/32", "203.1.113.0/24"}, "webhooks": {"198.52.100.1/32"}}, false), plan.DefaultLimits)
	Retain(first, st, t0, RetainPolicy{Window: state.Window{Grace: time.Hour}, Limits: plan.DefaultLimits}, nil)
	second := Run(context.Background(), specs, build(map[string][]string{"api": {"193.0.2.1/32"}}, true), plan.DefaultLimits)
	Retain(second, st, t0.Add(10*time.Minute), RetainPolicy{Window: state.Window{Grace: time.Hour}, Limits: plan.DefaultLimits}, nil)
	want := []netip.Prefix{netip.MustParsePrefix("193.0.2.1/32"), netip.MustParsePrefix("193.0.2.3/32"), netip.MustParsePrefix("203.1.113.0/24")}
	if diff := cmp.Diff(want, second[0].Desired.Prefixes, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("api prefixes (-want +got):\n%s", diff)
	}
	if len(second[0].Retained) != 2 || second[0].Retained[0] != want[1] {
		t.Errorf("retained = %v", second[0].Retained)
	}
	if !second[1].StaleSince.Equal(t0.Add(10*time.Minute)) || !second[1].Desired.Frozen {
		t.Errorf("webhooks stale since %s frozen %v", second[1].StaleSince, second[1].Desired.Frozen)
	}
	// Tightened limits drop a remembered prefix.
	third := Run(context.Background(), specs[:1], build(map[string][]string{"api": {"193.0.2.1/32"}}, false), plan.DefaultLimits)
	Retain(third, st, t0.Add(20*time.Minute), RetainPolicy{Window: state.Window{Grace: time.Hour}, Limits: plan.Limits{MinIPv4Bits: 32, MinIPv6Bits: 128}}, nil)
	if len(third[0].Retained) != 1 || third[0].Retained[0] != want[1] {
		t.Errorf("retained = %v, want only %s", third[0].Retained, want[1])
	}
}

// A vendor list refused for its prefix lengths names how many entries are
// refused and the first few, not only the first: the operator loosens the
// set's limits once, not once per run.
func TestRunNamesEveryUnsafePrefixCount(t *testing.T) {
	r := run(t, spec, fakeSource{name: "goog", addrs: []string{
		"8.8.4.0/24", "8.34.208.0/20", "34.0.0.0/15", "35.184.0.0/13", "2600:1900::/28", "2001:4860::/32"}})
	if !r.Desired.Frozen {
		t.Fatalf("set not frozen: %+v", r.Desired)
	}
	for _, want := range []string{"5 unsafe prefixes", "8.34.208.0/20", "34.0.0.0/15", "35.184.0.0/13", "and 2 more"} {
		if !strings.Contains(r.Desired.Reason, want) {
			t.Errorf("reason %q lacks %q", r.Desired.Reason, want)
		}
	}
	if strings.Contains(r.Desired.Reason, "2001:4860::/32") || strings.Contains(r.Desired.Reason, "\n") {
		t.Errorf("reason %q: want only the first three, on one line", r.Desired.Reason)
	}
	var pe *plan.UnsafePrefixError
	if !errors.As(r.Err, &pe) || pe.Prefix.String() != "8.34.208.0/20" {
		t.Errorf("err %v: want an UnsafePrefixError for the first refused prefix (exit 3)", r.Err)
	}
}
