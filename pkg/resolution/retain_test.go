package resolution

import (
	stdcmp "cmp"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/pdsafelist/pdsafelist/pkg/config"
	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/source"
	"github.com/pdsafelist/pdsafelist/pkg/state"
)

var (
	rt0     = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	pol     = RetainPolicy{Window: state.Window{Grace: time.Hour}, Limits: plan.DefaultLimits}
	cmpPfx  = []cmp.Option{cmpopts.EquateComparable(netip.Prefix{}), cmpopts.EquateEmpty()}
	gslbAll = []string{"44.242.69.1/32", "44.242.69.3/32", "44.242.69.5/32", "44.242.69.7/32", "44.242.69.9/32"}
)

func pfx(ps ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ps))
	for i, p := range ps {
		out[i] = netip.MustParsePrefix(p)
	}
	return out
}

// answered is a set whose one DNS source answered addrs with ttl.
func answered(name string, ttl time.Duration, addrs ...string) SetResult {
	r := source.Result{Kind: "dns", Name: name}
	for _, a := range addrs {
		r.Addresses = append(r.Addresses, source.Address{Prefix: netip.MustParsePrefix(a), TTL: ttl})
	}
	agg, err := plan.Aggregate(pfx(addrs...))
	if err != nil {
		panic(err)
	}
	return SetResult{Spec: config.SetSpec{Name: name}, Sources: []source.Result{r},
		Desired: plan.DesiredSet{Name: name, Prefixes: agg}}
}

func frozen(name string) SetResult {
	return SetResult{Spec: config.SetSpec{Name: name}, Desired: plan.DesiredSet{Name: name, Frozen: true, Reason: "down"}}
}

// retain runs Retain on one set and returns it.
func retain(st *state.File, r SetResult, now time.Time, p RetainPolicy, held map[string][]netip.Prefix) SetResult {
	rs := []SetResult{r}
	Retain(rs, st, now, p, held)
	return rs[0]
}

// Issue 11 item 2: with DNS answering 1 of 5 addresses per query, runs
// converge on 5; a lost state must not remove what DNS still serves.
func TestRetainColdStartTreatsHeldAsSeenNow(t *testing.T) {
	st := state.New()
	var got SetResult
	for i, a := range gslbAll {
		got = retain(st, answered("events", 30*time.Second, a), rt0.Add(time.Duration(i)*time.Minute), pol, nil)
	}
	if diff := cmp.Diff(pfx(gslbAll...), got.Desired.Prefixes, cmpPfx...); diff != "" {
		t.Fatalf("converged on (-want +got):\n%s", diff)
	}
	held := map[string][]netip.Prefix{"events": pfx(gslbAll...)}
	for name, lost := range map[string]*state.File{"missing or corrupt": state.New(), "set unknown": {FormatVersion: state.FormatVersion, Sets: map[string]*state.Set{"api": {}}}} {
		t.Run(name, func(t *testing.T) {
			now := rt0.Add(10 * time.Minute)
			got := retain(lost, answered("events", 30*time.Second, gslbAll[2]), now, pol, held)
			if diff := cmp.Diff(pfx(gslbAll...), got.Desired.Prefixes, cmpPfx...); diff != "" {
				t.Errorf("cold start desired (-want +got):\n%s", diff)
			}
			// The window then runs as usual: 44.242.69.9 is never answered
			// again and goes once grace has passed since the cold start.
			rotate := gslbAll[:4]
			for i := 1; i <= 5; i++ {
				now = now.Add(10 * time.Minute)
				got = retain(lost, answered("events", 30*time.Second, rotate[i%4]), now, pol, held)
			}
			got = retain(lost, answered("events", 30*time.Second, rotate[0]), now.Add(10*time.Minute-time.Second), pol, held)
			if diff := cmp.Diff(pfx(gslbAll...), got.Desired.Prefixes, cmpPfx...); diff != "" {
				t.Errorf("before grace ran out (-want +got):\n%s", diff)
			}
			got = retain(lost, answered("events", 30*time.Second, rotate[0]), now.Add(10*time.Minute), pol, held)
			if diff := cmp.Diff(pfx(rotate...), got.Desired.Prefixes, cmpPfx...); diff != "" {
				t.Errorf("after grace (-want +got):\n%s", diff)
			}
		})
	}
}

// held counts only for a set with no history: the state's memory is the
// better witness, and an aggregate the sink holds must not keep itself
// alive for ever by being "seen" each run.
func TestRetainHeldIgnoredWithHistory(t *testing.T) {
	st := state.New()
	retain(st, answered("events", 0, gslbAll[0]), rt0, pol, nil)
	got := retain(st, answered("events", 0, gslbAll[0]), rt0.Add(time.Minute), pol,
		map[string][]netip.Prefix{"events": pfx("44.242.69.0/27")})
	if diff := cmp.Diff(pfx(gslbAll[0]), got.Desired.Prefixes, cmpPfx...); diff != "" {
		t.Errorf("desired (-want +got):\n%s", diff)
	}
}

// Held entries are checked like answers before they are remembered.
func TestRetainColdStartChecksHeld(t *testing.T) {
	st := state.New()
	held := map[string][]netip.Prefix{"events": pfx("10.0.0.1/32", "44.242.69.3/32", "0.0.0.0/0")}
	got := retain(st, answered("events", 0, gslbAll[0]), rt0, pol, held)
	if diff := cmp.Diff(pfx(gslbAll[0], gslbAll[1]), got.Desired.Prefixes, cmpPfx...); diff != "" {
		t.Errorf("desired (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(pfx(gslbAll[1]), got.Retained, cmpPfx...); diff != "" {
		t.Errorf("retained (-want +got):\n%s", diff)
	}
}

// Issue 11 item 3: an outage longer than grace, then a subset answer, must
// not remove the rest; frozen time does not count against retention.
func TestRetainFrozenTimeDoesNotCount(t *testing.T) {
	st := state.New()
	all := gslbAll[:3]
	retain(st, answered("events", 30*time.Second, all...), rt0, pol, nil)
	// 5 minutes of the window are used, then 3 hours frozen.
	for now := rt0.Add(5 * time.Minute); now.Before(rt0.Add(3*time.Hour + 5*time.Minute)); now = now.Add(30 * time.Minute) {
		if r := retain(st, frozen("events"), now, pol, nil); !r.StaleSince.Equal(rt0.Add(5 * time.Minute)) {
			t.Fatalf("stale since %s", r.StaleSince)
		}
	}
	recovered := rt0.Add(3*time.Hour + 5*time.Minute)
	got := retain(st, answered("events", 30*time.Second, all[0]), recovered, pol, nil)
	if diff := cmp.Diff(pfx(all...), got.Desired.Prefixes, cmpPfx...); diff != "" {
		t.Fatalf("first answer after the outage (-want +got):\n%s", diff)
	}
	// 55 minutes of the window remain after the recovery.
	got = retain(st, answered("events", 30*time.Second, all[0]), recovered.Add(54*time.Minute), pol, nil)
	if diff := cmp.Diff(pfx(all...), got.Desired.Prefixes, cmpPfx...); diff != "" {
		t.Errorf("54m after recovery (-want +got):\n%s", diff)
	}
	got = retain(st, answered("events", 30*time.Second, all[0]), recovered.Add(55*time.Minute), pol, nil)
	if diff := cmp.Diff(pfx(all[0]), got.Desired.Prefixes, cmpPfx...); diff != "" {
		t.Errorf("55m after recovery (-want +got):\n%s", diff)
	}
}

// Issue 11 item 4: a TTL of 2147483647 counts only up to the cap.
func TestRetainCapsTTL(t *testing.T) {
	for _, tt := range []struct {
		maxTTL, keep time.Duration
	}{
		{0, state.DefaultMaxTTL},
		{2 * time.Hour, 2 * time.Hour},
		{time.Minute, time.Hour}, // grace still applies
	} {
		p := pol
		p.Window.MaxTTL = tt.maxTTL
		st := state.New()
		retain(st, answered("events", 2147483647*time.Second, gslbAll[0]), rt0, p, nil)
		retain(st, answered("events", 30*time.Second, gslbAll[1]), rt0, p, nil)
		got := retain(st, answered("events", 30*time.Second, gslbAll[1]), rt0.Add(tt.keep-time.Second), p, nil)
		if diff := cmp.Diff(pfx(gslbAll[:2]...), got.Desired.Prefixes, cmpPfx...); diff != "" {
			t.Errorf("max_ttl %s, just before %s (-want +got):\n%s", tt.maxTTL, tt.keep, diff)
		}
		got = retain(st, answered("events", 30*time.Second, gslbAll[1]), rt0.Add(tt.keep), p, nil)
		if diff := cmp.Diff(pfx(gslbAll[1]), got.Desired.Prefixes, cmpPfx...); diff != "" {
			t.Errorf("max_ttl %s, at %s (-want +got):\n%s", tt.maxTTL, tt.keep, diff)
		}
	}
}

// Issue 11 item 4: a last_seen in the future (clock jump, edited state) is
// clamped to now, so it buys one window, not decades.
func TestRetainClampsFutureTimes(t *testing.T) {
	future := rt0.AddDate(40, 0, 0)
	st := state.New()
	st.Sets["events"] = state.NewSet([]state.Address{{Prefix: pfx(gslbAll[0])[0], FirstSeen: future, LastSeen: future, TTLSeconds: 30}}, time.Time{}, future)
	st.Sets["api"] = &state.Set{StaleSince: future}
	if r := retain(st, frozen("api"), rt0, pol, nil); !r.StaleSince.Equal(rt0) {
		t.Errorf("stale since %s, want now", r.StaleSince)
	}
	got := retain(st, answered("events", 0, gslbAll[1]), rt0, pol, nil)
	if diff := cmp.Diff(pfx(gslbAll[:2]...), got.Desired.Prefixes, cmpPfx...); diff != "" {
		t.Errorf("now (-want +got):\n%s", diff)
	}
	got = retain(st, answered("events", 0, gslbAll[1]), rt0.Add(time.Hour), pol, nil)
	if diff := cmp.Diff(pfx(gslbAll[1]), got.Desired.Prefixes, cmpPfx...); diff != "" {
		t.Errorf("one window later (-want +got):\n%s", diff)
	}
	for _, a := range st.Sets["events"].Addresses() {
		if a.FirstSeen.After(rt0.Add(time.Hour)) || a.LastSeen.After(rt0.Add(time.Hour)) {
			t.Errorf("%s kept a time in the future: %+v", a.Prefix, a)
		}
	}
}

// A frozen set carries what it last vouched for: its memory still within
// retention plus what the sinks hold for it, checked and aggregated.
func TestRetainFrozenCarriesLastKnown(t *testing.T) {
	st := state.New()
	retain(st, answered("events", 0, "44.242.69.1/32", "44.242.69.2/32"), rt0, pol, nil)
	retain(st, answered("events", 0, "44.242.69.2/32", "44.242.69.5/32"), rt0.Add(30*time.Minute), pol, nil)
	// 44.242.69.1 was last seen at rt0 and is out of the window at +1h.
	held := map[string][]netip.Prefix{"events": pfx("44.242.69.3/32", "10.1.1.1/32"), "api": pfx("54.0.0.1/32")}
	got := retain(st, frozen("events"), rt0.Add(time.Hour), pol, held)
	if diff := cmp.Diff(pfx("44.242.69.2/31", "44.242.69.5/32"), got.Desired.LastKnown, cmpPfx...); diff != "" {
		t.Errorf("last known (-want +got):\n%s", diff)
	}
	if len(got.Desired.Prefixes) != 0 {
		t.Errorf("frozen set plans prefixes %v", got.Desired.Prefixes)
	}
	// Still frozen later: frozen time does not age its memory.
	got = retain(st, frozen("events"), rt0.Add(5*time.Hour), pol, nil)
	if diff := cmp.Diff(pfx("44.242.69.2/32", "44.242.69.5/32"), got.Desired.LastKnown, cmpPfx...); diff != "" {
		t.Errorf("last known after 4h frozen (-want +got):\n%s", diff)
	}
	// A frozen set the state never saw vouches for what the sinks hold.
	got = retain(st, frozen("api"), rt0, pol, held)
	if diff := cmp.Diff(pfx("54.0.0.1/32"), got.Desired.LastKnown, cmpPfx...); diff != "" {
		t.Errorf("cold frozen last known (-want +got):\n%s", diff)
	}
}

// A dry run on a host with no memory of a set and nothing held for it can
// retain nothing, so it must not copy the answer (38 MB at a million
// addresses) to learn that; its result equals a real run's.
func TestRetainScratchFreshSetCopiesNothing(t *testing.T) {
	addrs := make([]string, 20000)
	for i := range addrs {
		addrs[i] = netip.AddrFrom4([4]byte{44, 1, byte(i >> 8), byte(i)}).String() + "/32"
	}
	r := answered("hooks", time.Minute, addrs...)
	real := retain(state.New(), r, rt0, pol, nil)
	var allocated uint64
	for range 3 {
		st := state.New()
		st.Scratch = true
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		dry := retain(st, r, rt0, pol, nil)
		runtime.ReadMemStats(&after)
		allocated = after.TotalAlloc - before.TotalAlloc
		if diff := cmp.Diff(real.Desired.Prefixes, dry.Desired.Prefixes, cmpPfx...); diff != "" || len(dry.Retained) != 0 {
			t.Fatalf("dry run differs from a real run (-real +dry):\n%s retained %v", diff, dry.Retained)
		}
	}
	if allocated > 64<<10 {
		t.Errorf("a scratch run of a fresh set allocated %d bytes for 20,000 addresses; want no copy of the answer", allocated)
	}
}

// An answer of several sorted lists (the e2e's ten HTTPS lists) is merged
// as the state reads it: no copy of the answer (40 MB at a million
// addresses) and no second buffer to merge the lists into (38 MB more).
// What the state remembers is the same as from one sorted list.
func TestRetainMergesSortedListsWithoutASecondCopy(t *testing.T) {
	const lists, per = 10, 4000
	r := SetResult{Spec: config.SetSpec{Name: "big"}, Desired: plan.DesiredSet{Name: "big"}}
	var all []netip.Prefix
	ttl := map[netip.Prefix]int64{}
	for l := range lists {
		src := source.Result{Kind: "http", Name: fmt.Sprint(l)}
		for i := range per {
			v := uint32(44)<<24 + uint32(i*lists+l)*2
			p := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), 32)
			src.Addresses = append(src.Addresses, source.Address{Prefix: p, TTL: time.Duration(l) * time.Second})
			all = append(all, p)
			ttl[p] = int64(l)
		}
		r.Sources = append(r.Sources, src)
	}
	agg, err := plan.Aggregate(slices.Clone(all))
	if err != nil {
		t.Fatal(err)
	}
	r.Desired.Prefixes = agg
	st := state.New()
	retain(st, r, rt0, pol, nil)
	var allocated uint64
	for i := range 3 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		got := retain(st, r, rt0.Add(time.Duration(i+1)*time.Minute), pol, nil)
		runtime.ReadMemStats(&after)
		allocated = after.TotalAlloc - before.TotalAlloc
		if len(got.Retained) != 0 {
			t.Fatalf("retained %d prefixes of an unchanged answer", len(got.Retained))
		}
	}
	slices.SortFunc(all, plan.ComparePrefix)
	var remembered []netip.Prefix
	for _, a := range st.Sets["big"].Addresses() {
		remembered = append(remembered, a.Prefix)
		if a.TTLSeconds != ttl[a.Prefix] {
			t.Fatalf("%s: ttl %ds, want %ds", a.Prefix, a.TTLSeconds, ttl[a.Prefix])
		}
	}
	if diff := cmp.Diff(all, remembered, cmpPfx...); diff != "" {
		t.Fatalf("remembered (-want +got):\n%s", diff)
	}
	n := uint64(lists * per)
	if perAddr := allocated / n; perAddr > 4 {
		t.Errorf("retaining an unchanged answer of %d lists allocated %d bytes per address; want no copy of it", lists, perAddr)
	}
}

// mergeSeen copies every address once, in order when each list is sorted,
// and whole when some list is not.
func TestMergeSeenKeepsEveryAddress(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	byPrefix := func(a, b state.Seen) int { return plan.ComparePrefix(a.Prefix, b.Prefix) }
	for round := range 300 {
		var srcs []source.Result
		var want []state.Seen
		sorted := r.IntN(2) == 0
		for range r.IntN(12) {
			var src source.Result
			for range r.IntN(30) {
				p := netip.PrefixFrom(netip.AddrFrom4([4]byte{44, 0, byte(r.IntN(4)), byte(r.IntN(256))}), 32)
				src.Addresses = append(src.Addresses, source.Address{Prefix: p, TTL: time.Duration(r.IntN(3)) * time.Second})
			}
			if sorted {
				slices.SortFunc(src.Addresses, func(a, b source.Address) int { return plan.ComparePrefix(a.Prefix, b.Prefix) })
			}
			for _, a := range src.Addresses {
				want = append(want, state.Seen{Prefix: a.Prefix, TTL: a.TTL})
			}
			srcs = append(srcs, src)
		}
		got := mergeSeen(srcs)
		if sorted && !slices.IsSortedFunc(got, byPrefix) {
			t.Fatalf("round %d: sorted lists merged out of order", round)
		}
		key := func(a, b state.Seen) int { return stdcmp.Or(byPrefix(a, b), int(a.TTL-b.TTL)) }
		slices.SortFunc(got, key)
		slices.SortFunc(want, key)
		if !slices.Equal(got, want) {
			t.Fatalf("round %d: merged %d addresses, want %d, or different ones", round, len(got), len(want))
		}
	}
}

// Retention of sorted lists, merged as read, remembers and retains exactly
// what Observe of the same answer copied does, duplicates across lists and
// TTLs included.
func TestRetainSortedListsMatchesObserve(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 17))
	byPrefix := func(a, b source.Address) int { return plan.ComparePrefix(a.Prefix, b.Prefix) }
	for round := range 200 {
		merged, copied := state.New(), state.New()
		now := rt0
		for step := range 4 {
			res := SetResult{Spec: config.SetSpec{Name: "s"}, Desired: plan.DesiredSet{Name: "s"}}
			var seen []state.Seen
			var all []netip.Prefix
			for range 1 + r.IntN(6) {
				var src source.Result
				for range r.IntN(25) {
					p := netip.PrefixFrom(netip.AddrFrom4([4]byte{44, 0, byte(r.IntN(2)), byte(r.IntN(64))}), 32)
					src.Addresses = append(src.Addresses, source.Address{Prefix: p, TTL: time.Duration(r.IntN(5000)) * time.Second})
				}
				slices.SortFunc(src.Addresses, byPrefix)
				for _, a := range src.Addresses {
					seen = append(seen, state.Seen{Prefix: a.Prefix, TTL: a.TTL})
					all = append(all, a.Prefix)
				}
				res.Sources = append(res.Sources, src)
			}
			if len(all) == 0 {
				continue
			}
			res.Desired.Prefixes, _ = plan.Aggregate(all)
			got := retain(merged, res, now, pol, nil)
			want := pol.allowed("s", copied.Observe("s", seen, nil, now, state.Window{Grace: pol.Window.Grace}))
			if diff := cmp.Diff(want, got.Retained, cmpPfx...); diff != "" {
				t.Fatalf("round %d step %d: retained (-observe +merged):\n%s", round, step, diff)
			}
			if diff := cmp.Diff(copied.Sets["s"].Addresses(), merged.Sets["s"].Addresses(), cmpPfx...); diff != "" || !copied.Sets["s"].LastSuccess.Equal(merged.Sets["s"].LastSuccess) {
				t.Fatalf("round %d step %d: memory (-observe +merged):\n%s", round, step, diff)
			}
			now = now.Add(time.Duration(r.IntN(90)) * time.Minute)
		}
	}
}

// With grace 0 an answering set lets an address go once its list drops
// it, but a frozen set dropped nothing: it vouches for its last answer,
// run after run, and no more (issue 20 item 7).
func TestRetainGraceZeroFrozenKnowsLastAnswer(t *testing.T) {
	zero := RetainPolicy{Limits: plan.DefaultLimits}
	st := state.New()
	retain(st, answered("events", 0, "44.242.69.1/32", "44.242.69.3/32"), rt0, zero, nil)
	retain(st, answered("events", 0, "44.242.69.3/32", "44.242.69.5/32"), rt0.Add(5*time.Minute), zero, nil)
	for _, at := range []time.Duration{10 * time.Minute, 24 * time.Hour} {
		got := retain(st, frozen("events"), rt0.Add(at), zero, nil)
		if diff := cmp.Diff(pfx("44.242.69.3/32", "44.242.69.5/32"), got.Desired.LastKnown, cmpPfx...); diff != "" {
			t.Errorf("frozen for %s: last known (-want +got):\n%s", at, diff)
		}
	}
}

// The everyday run: one address of a large list replaced, so one is
// retained beside the answer. The retained address is merged into one
// copy of the answer, aggregated where it lies: before, the answer was
// copied, and copied again inside Aggregate (61 MB at a million, at the
// peak of such a run).
func TestRetainOneAddressCopiesTheAnswerOnce(t *testing.T) {
	const n = 40_000
	list := func(from int) SetResult {
		r := SetResult{Spec: config.SetSpec{Name: "big"}, Desired: plan.DesiredSet{Name: "big"}}
		src := source.Result{Kind: "http", Name: "list"}
		for i := from; i < from+n; i++ {
			v := uint32(44)<<24 + uint32(i)*2
			p := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), 32)
			src.Addresses = append(src.Addresses, source.Address{Prefix: p})
			r.Desired.Prefixes = append(r.Desired.Prefixes, p)
		}
		r.Sources = []source.Result{src}
		return r
	}
	st := state.New()
	retain(st, list(0), rt0, pol, nil)
	moved := list(1) // the first address gone, one new at the end
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	got := retain(st, moved, rt0.Add(time.Minute), pol, nil)
	runtime.ReadMemStats(&after)
	if len(got.Retained) != 1 || len(got.Desired.Prefixes) != n+1 || got.Desired.Prefixes[0] != list(0).Desired.Prefixes[0] {
		t.Fatalf("retained %v, %d desired; want the first address kept and %d", got.Retained, len(got.Desired.Prefixes), n+1)
	}
	// One copy of the answer is 32 bytes an address; the state's memory
	// of it is 12 more.
	perAddr := (after.TotalAlloc - before.TotalAlloc) / n
	t.Logf("%d bytes an address", perAddr)
	if perAddr > 52 {
		t.Errorf("retaining one address beside %d allocated %d bytes an address; want one copy of the answer (<= 52)", n, perAddr)
	}
}
