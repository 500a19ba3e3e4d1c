package plan

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func claimSet(name string, ports []uint16, ps ...string) DesiredSet {
	d := DesiredSet{Name: name, Direction: Egress, Protocol: TCP, Ports: ports}
	for _, p := range ps {
		d.Prefixes = append(d.Prefixes, netip.MustParsePrefix(p))
	}
	return d
}

func frozenSet(name string, ports []uint16, lastKnown ...string) DesiredSet {
	d := DesiredSet{Name: name, Direction: Egress, Protocol: TCP, Ports: ports, Frozen: true, Reason: "SERVFAIL"}
	for _, p := range lastKnown {
		d.LastKnown = append(d.LastKnown, netip.MustParsePrefix(p))
	}
	return d
}

// hold is a key held under set's label, egress tcp.
type hold struct {
	prefix string
	port   uint16
	set    string
}

func heldMap(hs ...hold) map[Entry]string {
	m := map[Entry]string{}
	for _, h := range hs {
		m[Entry{Prefix: netip.MustParsePrefix(h.prefix), Direction: Egress, Protocol: TCP, Port: h.port}] = h.set
	}
	return m
}

var (
	one443 = []uint16{443}
	two    = []uint16{443, 8443}
)

const (
	pA = "198.52.100.7/32"
	pB = "198.52.100.1/32"
	pC = "198.52.100.9/32"
)

func TestClaim(t *testing.T) {
	tests := []struct {
		name      string
		desired   []DesiredSet
		held      map[Entry]string
		relabel   Relabel
		want      map[string][]string // active sets' prefixes after the claim
		conflicts []string
	}{{
		name:    "unheld shared key goes to the first set by name",
		desired: []DesiredSet{claimSet("events", one443, pA, pB), claimSet("api", one443, pA), claimSet("app", one443, pA)},
		relabel: RelabelInPlace,
		want:    map[string][]string{"events": {pB}, "api": {pA}, "app": nil},
	}, {
		name:    "a holder that still wants the key keeps it",
		desired: []DesiredSet{claimSet("events", one443, pA), claimSet("api", one443, pA)},
		held:    heldMap(hold{pA, 443, "events"}),
		relabel: RelabelInPlace,
		want:    map[string][]string{"events": {pA}, "api": nil},
	}, {
		name:    "holder drops it, another wants it: relabel to the first that wants it",
		desired: []DesiredSet{claimSet("events", one443, pB), claimSet("app", one443, pA), claimSet("api", one443, pA)},
		held:    heldMap(hold{pA, 443, "events"}, hold{pB, 443, "events"}),
		relabel: RelabelInPlace,
		want:    map[string][]string{"events": {pB}, "api": {pA}, "app": nil},
	}, {
		name:    "holder drops it, another wants it, no relabel: the holder keeps it",
		desired: []DesiredSet{claimSet("events", one443, pB), claimSet("api", one443, pA)},
		held:    heldMap(hold{pA, 443, "events"}, hold{pB, 443, "events"}),
		relabel: KeepLabel,
		want:    map[string][]string{"events": {pB, pA}, "api": nil},
	}, {
		name:    "holder drops it, a frozen set's LastKnown has it: kept under its label",
		desired: []DesiredSet{claimSet("events", one443, pB), frozenSet("api", one443, pA)},
		held:    heldMap(hold{pA, 443, "events"}, hold{pB, 443, "events"}),
		relabel: RelabelInPlace,
		want:    map[string][]string{"events": {pB, pA}},
	}, {
		name:    "LastKnown aggregated wider than the key still vouches",
		desired: []DesiredSet{claimSet("events", one443, pB), frozenSet("api", one443, "198.52.100.6/31")},
		held:    heldMap(hold{pA, 443, "events"}),
		relabel: KeepLabel,
		want:    map[string][]string{"events": {pB, pA}},
	}, {
		name:    "a key wider than LastKnown overlaps it and is kept",
		desired: []DesiredSet{claimSet("events", one443), frozenSet("api", one443, pA)},
		held:    heldMap(hold{"198.52.100.0/24", 443, "events"}),
		relabel: RelabelInPlace,
		want:    map[string][]string{"events": {"198.52.100.0/24"}},
	}, {
		name:    "LastKnown on another port does not vouch",
		desired: []DesiredSet{claimSet("events", one443, pB), frozenSet("api", []uint16{8443}, pA)},
		held:    heldMap(hold{pA, 443, "events"}),
		relabel: RelabelInPlace,
		want:    map[string][]string{"events": {pB}},
	}, {
		name:    "empty LastKnown: what the frozen set holds vouches",
		desired: []DesiredSet{claimSet("events", one443, pB), frozenSet("api", one443)},
		held:    heldMap(hold{pA, 443, "events"}, hold{"198.52.100.6/31", 443, "api"}),
		relabel: RelabelInPlace,
		want:    map[string][]string{"events": {pB, pA}},
	}, {
		name:    "empty LastKnown: the frozen set keeps its own key, an active set wanting it adds nothing",
		desired: []DesiredSet{claimSet("events", one443, pA, pB), frozenSet("api", one443)},
		held:    heldMap(hold{pA, 443, "api"}),
		relabel: RelabelInPlace,
		want:    map[string][]string{"events": {pB}},
	}, {
		name:    "a set not routed here keeps its key",
		desired: []DesiredSet{claimSet("events", one443, pA)},
		held:    heldMap(hold{pA, 443, "webhooks"}),
		relabel: RelabelInPlace,
		want:    map[string][]string{"events": nil},
	}, {
		name:    "nobody wants it: unclaimed, so Calculate removes it",
		desired: []DesiredSet{claimSet("events", one443, pB), frozenSet("api", one443, pC)},
		held:    heldMap(hold{pA, 443, "events"}),
		relabel: KeepLabel,
		want:    map[string][]string{"events": {pB}},
	}, {
		name:      "a prefix on some ports of one set and others of another",
		desired:   []DesiredSet{claimSet("alpha", one443, pA), claimSet("beta", two, pA)},
		relabel:   RelabelInPlace,
		want:      map[string][]string{"alpha": {pA}, "beta": {pA}},
		conflicts: []string{"sets beta and alpha both allow 198.52.100.7/32 egress but on different ports"},
	}, {
		name:    "a multi-port holder kept for a frozen set on one port, held on both",
		desired: []DesiredSet{claimSet("beta", two, pB), frozenSet("api", one443, pA)},
		held:    heldMap(hold{pA, 443, "beta"}, hold{pA, 8443, "beta"}),
		relabel: RelabelInPlace,
		want:    map[string][]string{"beta": {pB, pA}},
	}, {
		name:      "a multi-port holder kept for a frozen set would have to add the other port",
		desired:   []DesiredSet{claimSet("beta", two, pB), frozenSet("api", one443, pA)},
		held:      heldMap(hold{pA, 443, "beta"}),
		relabel:   RelabelInPlace,
		want:      map[string][]string{"beta": {pB, pA}},
		conflicts: []string{"set beta keeps 198.52.100.7/32 egress for another set but would have to add it on ports nobody wants"},
	}, {
		name:      "a holder whose ports changed cannot keep a vouched key",
		desired:   []DesiredSet{claimSet("events", one443, pB), frozenSet("api", []uint16{8443}, pA)},
		held:      heldMap(hold{pA, 8443, "events"}),
		relabel:   RelabelInPlace,
		want:      map[string][]string{"events": {pB}},
		conflicts: []string{"set events holds 198.52.100.7/32 egress tcp/8443, no longer one of its ports, and another set still wants it"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := cloneSets(tt.desired)
			out, conflicts := Claim(tt.desired, tt.held, tt.relabel)
			if diff := cmp.Diff(in, tt.desired, cmpopts.EquateComparable(netip.Prefix{})); diff != "" {
				t.Errorf("Claim changed its input (-before +after):\n%s", diff)
			}
			got := map[string][]string{}
			for i, d := range out {
				if d.Name != tt.desired[i].Name || d.Frozen != tt.desired[i].Frozen {
					t.Errorf("out[%d] is %s, want %s in input order", i, d.Name, tt.desired[i].Name)
				}
				if d.Frozen {
					if diff := cmp.Diff(tt.desired[i], d, cmpopts.EquateComparable(netip.Prefix{})); diff != "" {
						t.Errorf("frozen set %s changed (-want +got):\n%s", d.Name, diff)
					}
					continue
				}
				var ps []string
				for _, p := range d.Prefixes {
					ps = append(ps, p.String())
				}
				got[d.Name] = ps
			}
			want := map[string][]string{}
			for n, ps := range tt.want {
				want[n] = sortedPrefixes(ps)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("prefixes (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.conflicts, conflicts); diff != "" {
				t.Errorf("conflicts (-want +got):\n%s", diff)
			}
		})
	}
}

func sortedPrefixes(ss []string) []string {
	if ss == nil {
		return nil
	}
	ps := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		ps[i] = netip.MustParsePrefix(s)
	}
	slices.SortFunc(ps, ComparePrefix)
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

func cloneSets(ds []DesiredSet) []DesiredSet {
	out := make([]DesiredSet, len(ds))
	for i, d := range ds {
		d.Ports = slices.Clone(d.Ports)
		d.Prefixes = slices.Clone(d.Prefixes)
		d.LastKnown = slices.Clone(d.LastKnown)
		out[i] = d
	}
	return out
}

// TestClaimProperties runs Claim then Calculate on random sets, labels and
// freezes, and applies each plan the way a relabelling sink would: one
// entry per key, no key that an active set wants or a frozen set vouches
// for is ever lost, and the next run plans nothing.
func TestClaimProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	pool := []string{"198.52.100.0/32", "198.52.100.1/32", "198.52.100.2/31", "198.52.100.4/30", "2001:db9::1/128", "2001:db9::/64"}
	portSets := [][]uint16{{443}, {443}, {443}, {443, 8443}}
	names := []string{"api", "app", "events", "webhooks"}
	pick := func() []netip.Prefix {
		var ps []netip.Prefix
		for _, s := range pool {
			if r.IntN(3) == 0 {
				ps = append(ps, netip.MustParsePrefix(s))
			}
		}
		return ps
	}
	for iter := range 3000 {
		relabel := Relabel(r.IntN(2) == 0)
		var desired []DesiredSet
		for _, n := range names[:1+r.IntN(len(names))] {
			d := DesiredSet{Name: n, Direction: Egress, Protocol: TCP, Ports: portSets[r.IntN(len(portSets))]}
			if !relabel {
				d.Direction, d.Protocol, d.Ports = 0, 0, []uint16{0} // the prefix-list shape: a bare CIDR
			}
			if r.IntN(4) == 0 {
				d.Frozen, d.LastKnown = true, pick()
			} else {
				d.Prefixes = pick()
			}
			desired = append(desired, d)
		}
		held := map[Entry]string{}
		for range r.IntN(6) {
			port := uint16(443)
			if !relabel {
				port = 0
			} else if r.IntN(4) == 0 {
				port = 8443
			}
			k := Entry{Prefix: netip.MustParsePrefix(pool[r.IntN(len(pool))]), Direction: Egress, Protocol: TCP, Port: port}
			if !relabel {
				k.Direction, k.Protocol = 0, 0
			}
			held[k] = names[r.IntN(len(names))]
		}
		out, conflicts := Claim(desired, held, relabel)
		if len(conflicts) > 0 {
			continue // refused by the sink's Check: nothing is applied
		}
		p := Input{Sink: "sink", Desired: out, Current: stateOf(held)}.Calculate()
		after := map[Entry]string{}
		for _, e := range p.Result() {
			if s, dup := after[Key(e)]; dup {
				t.Fatalf("iter %d: key %v held twice, by %s and %s", iter, Key(e), s, e.Set)
			}
			after[Key(e)] = e.Set
		}
		// Nothing is added that no set wants.
		for _, e := range p.Add {
			if !slices.ContainsFunc(desired, func(d DesiredSet) bool {
				return !d.Frozen && slices.Contains(d.Entries(), withSet(Key(e), d.Name))
			}) {
				t.Fatalf("iter %d: adds %v, which no active set wants\ndesired %v\nheld %v", iter, e, desired, held)
			}
		}
		// In place, a remove paired with an add of the same key is a
		// relabel; without relabelling a sink would refuse to apply it.
		for _, e := range p.Remove {
			if _, relabelled := after[Key(e)]; relabelled && relabel == KeepLabel {
				t.Fatalf("iter %d: %v handed over by a sink that cannot relabel", iter, e)
			}
		}
		wanted := vouchers(desired, held)
		for k := range held {
			if _, kept := after[k]; kept {
				continue
			}
			if wanted(k) {
				t.Fatalf("iter %d: %v removed though a frozen set vouches for it\ndesired %v\nheld %v", iter, k, desired, held)
			}
			for _, d := range desired {
				if !d.Frozen && slices.Contains(d.Entries(), withSet(k, d.Name)) {
					t.Fatalf("iter %d: %v removed though set %s wants it\ndesired %v\nheld %v", iter, k, d.Name, desired, held)
				}
			}
		}
		for _, d := range desired {
			for _, e := range d.Entries() {
				if _, ok := after[Key(e)]; !ok && !d.Frozen && !covered(p, e) {
					t.Fatalf("iter %d: %v wanted but not held after the plan", iter, e)
				}
			}
		}
		out2, _ := Claim(desired, after, relabel)
		if p2 := (Input{Sink: "sink", Desired: out2, Current: stateOf(after)}).Calculate(); p2.HasChanges() {
			t.Fatalf("iter %d: second run not quiet: add %v remove %v\ndesired %v\nheld %v", iter, p2.Add, p2.Remove, desired, held)
		}
	}
}

func withSet(k Entry, set string) Entry {
	k.Set = set
	return k
}

func covered(p SinkPlan, e Entry) bool {
	return slices.Contains(p.Covered, e)
}

func stateOf(held map[Entry]string) State {
	var st State
	for k, s := range held {
		st.Owned = append(st.Owned, withSet(k, s))
	}
	st.Owned = Sort(st.Owned)
	return st
}

func TestClaimConflictMessagesAreOneLine(t *testing.T) {
	_, conflicts := Claim([]DesiredSet{claimSet("alpha", one443, pA), claimSet("beta", two, pA)}, nil, RelabelInPlace)
	for _, c := range conflicts {
		if strings.Contains(c, "\n") || !strings.Contains(c, fmt.Sprint(pA)) {
			t.Errorf("conflict %q", c)
		}
	}
}
