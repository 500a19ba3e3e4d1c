package iptables

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/sink/sinktest"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/netns"
)

// Through netlink, staging runs no ipset process: the temporary set is
// created, filled in batches, swapped in and destroyed over the sink's
// own socket. Before, every first run and every large change fed a
// script of every member (some 40 MB at a million) to ipset restore.
func TestLiveIPSetStagesThroughNetlink(t *testing.T) {
	integration(t)
	p := netns.New(t)
	cmds := sinktest.NewCommands(t)
	s := wrappedIn(t, p, cmds, func(o *Options) { o.Enforce = "ingress" })
	all := append(bigPrefixes(40_000), bigPrefixes6(300)...)
	set := func(ps []netip.Prefix) []plan.DesiredSet {
		return []plan.DesiredSet{{Name: "webhooks", Direction: plan.Ingress, Protocol: plan.TCP, Ports: []uint16{8443}, Prefixes: ps}}
	}
	ipsetRuns := func() [][]string {
		return slices.DeleteFunc(cmds.Calls(t), func(c []string) bool { return c[0] != "ipset" })
	}
	key := plan.Entry{Set: "webhooks", Protocol: plan.TCP, Port: 8443}
	name4, name6 := ipsetName(DefaultChainIn, key, 4), ipsetName(DefaultChainIn, key, 6)
	check := func(when string, want []netip.Prefix) {
		t.Helper()
		if ran := ipsetRuns(); len(ran) > 0 {
			t.Errorf("%s: the ipset command ran:\n%s", when, joinCalls(ran))
		}
		if got, wantSets := setNames(t, p), []string{name4, name6}; !slices.Equal(got, wantSets) {
			t.Errorf("%s: ipsets %v, want %v (no temporary set left)", when, got, wantSets)
		}
		st, err := s.Current(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(set(want)[0].Entries(), st.Owned, cmpPrefix); diff != "" || len(st.Drift) != 0 {
			t.Errorf("%s: read back (-want +got):\n%s\ndrift %q", when, diff, st.Drift)
		}
	}

	// First run: the sets are made, filled and swapped in before the
	// chains that match them are committed.
	first := append(slices.Clone(all[:20_000]), all[40_000:]...)
	cycle(t, s, set(first))
	check("first run", first)
	head := sh(t, p, "ipset", "list", "-t", name4)
	for _, want := range []string{"Type: hash:net", " family inet ", " hashsize 8192 ", " maxelem 65536 ", "References: 1"} {
		if !strings.Contains(head, want) {
			t.Errorf("ipset %s header lacks %q:\n%s", name4, want, head)
		}
	}
	// Every IPv4 member changes: too many for in place, so staged.
	second := append(slices.Clone(all[20_000:40_000]), all[40_000:]...)
	cycle(t, s, set(second))
	check("every member changed", second)
	// A new port changes the chains: both families staged again.
	moved := set(second)
	moved[0].Ports = []uint16{9443}
	cycle(t, s, moved)
	if ran := ipsetRuns(); len(ran) > 0 {
		t.Errorf("new port: the ipset command ran:\n%s", joinCalls(ran))
	}
	key.Port = 9443
	if got, want := setNames(t, p), []string{ipsetName(DefaultChainIn, key, 4), ipsetName(DefaultChainIn, key, 6)}; !slices.Equal(got, want) {
		t.Errorf("new port: ipsets %v, want %v (the old ones destroyed)", got, want)
	}
}

// swapCounter counts the staged sets swapped in or back.
type swapCounter struct {
	ipsetKernel
	swaps *atomic.Int32
}

func (k swapCounter) script(ctx context.Context, steps []ipsetStep) error {
	for _, st := range steps {
		if st.op == opSwap {
			k.swaps.Add(1)
		}
	}
	return k.ipsetKernel.script(ctx, steps)
}

// refusingKernel slips a member the kernel refuses (hash:net takes no
// /0) into the middle of the members of every staged IPv4 set.
type refusingKernel struct{ ipsetKernel }

var refused = netip.MustParsePrefix("0.0.0.0/0")

func (k refusingKernel) script(ctx context.Context, steps []ipsetStep) error {
	steps = slices.Clone(steps)
	for i, st := range steps {
		if st.op != opAdd || st.members.fam != 4 {
			continue
		}
		g := *st.members
		es := slices.Concat(g.parts...)
		bad := es[0]
		bad.Prefix = refused
		g.parts = [][]plan.Entry{slices.Insert(es, len(es)/2, bad)}
		g.n++
		steps[i].members = &g
	}
	return k.ipsetKernel.script(ctx, steps)
}

// A member the kernel refuses half way through filling a staged set
// fails the apply with an error that names it, before any swap: the old
// set stays in use with its old members, the chains stay, and neither
// the temporary set nor a set made for new chains is left.
func TestLiveIPSetStagingRefusedMember(t *testing.T) {
	integration(t)
	p := netns.New(t)
	cmds := sinktest.NewCommands(t)
	s := wrappedIn(t, p, cmds, func(o *Options) { o.Enforce = "ingress" })
	all := bigPrefixes(12_000)
	set := func(ps []netip.Prefix, ports ...uint16) []plan.DesiredSet {
		return []plan.DesiredSet{{Name: "webhooks", Direction: plan.Ingress, Protocol: plan.TCP, Ports: ports, Prefixes: ps}}
	}
	cycle(t, s, set(all[:6_000], 8443))
	rules, members := save(t, p), ipsets(t, p, nil, true)
	s.kernel = refusingKernel{s.kernel}
	for _, tc := range []struct {
		name string
		d    []plan.DesiredSet
	}{
		{"every member changed", set(all[6_000:], 8443)},
		{"chains changed too", set(all[6_000:], 8443, 9443)},
	} {
		st, err := s.Current(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		err = s.Apply(context.Background(), sinktest.Plan(t, sink.Step{Sink: s}, tc.d, st))
		t.Log(err)
		if err == nil || !strings.Contains(err.Error(), "ipset add ") || !strings.Contains(err.Error(), " "+refused.String()+": ") {
			t.Fatalf("%s: Apply: %v; want an error naming the refused member %s", tc.name, err, refused)
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error is not one line: %q", tc.name, err)
		}
		if got := save(t, p); got != rules {
			t.Errorf("%s: chains changed (-before +after):\n%s", tc.name, cmp.Diff(rules, got))
		}
		if got := ipsets(t, p, nil, true); got != members {
			t.Errorf("%s: ipsets changed (-before +after):\n%.2000s", tc.name, cmp.Diff(members, got))
		}
	}
	if ran := slices.DeleteFunc(cmds.Calls(t), func(c []string) bool { return c[0] != "ipset" }); len(ran) > 0 {
		t.Errorf("the ipset command ran:\n%s", joinCalls(ran))
	}
}
