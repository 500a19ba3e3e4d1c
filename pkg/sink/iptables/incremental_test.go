package iptables

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
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

// wrappedIn is liveIn with every command logged by cmds, so a test counts
// the processes a run starts.
func wrappedIn(t testing.TB, p *netns.Pair, cmds *sinktest.Commands, f func(*Options)) *Live {
	in := func(bin string) []string { return []string{"ip", "netns", "exec", p.Server, bin} }
	return liveIn(t, p.Server, func(o *Options) {
		o.IPTables = cmds.Wrap(t, "iptables", in("iptables")...)
		o.IP6Tables = cmds.Wrap(t, "ip6tables", in("ip6tables")...)
		o.IPTablesRestore = cmds.Wrap(t, "iptables-restore", in("iptables-restore")...)
		o.IP6TablesRestore = cmds.Wrap(t, "ip6tables-restore", in("ip6tables-restore")...)
		o.IPSet = cmds.Wrap(t, "ipset", in("ipset")...)
		if f != nil {
			f(o)
		}
	})
}

// Issue 24: one address changed in an ipset of 100,000 members took 15
// processes (every read twice, two test restores, two restores, four
// ipset restores). Now the run reads each family once, the chains'
// text is unchanged so no restore runs, and the set changes in place
// through netlink: at most 4 processes (2 today: one -S per family).
func TestLiveIPSetOneChangeProcesses(t *testing.T) {
	integration(t)
	p := netns.New(t)
	cmds := sinktest.NewCommands(t)
	s := wrappedIn(t, p, cmds, func(o *Options) { o.Enforce = "ingress" })
	all := bigPrefixes(100_001)
	before := all[:100_000]
	after := append(slices.Clone(all[1:100_000]), all[100_000])
	set := func(ps []netip.Prefix) []plan.DesiredSet {
		return []plan.DesiredSet{{Name: "webhooks", Direction: plan.Ingress, Protocol: plan.TCP, Ports: []uint16{8443}, Prefixes: ps}}
	}
	cycle(t, s, set(before))
	name := ipsetName(DefaultChainIn, plan.Entry{Set: "webhooks", Protocol: plan.TCP, Port: 8443}, 4)
	rulesBefore := save(t, p)
	calls := len(cmds.Calls(t))

	pl := sinktest.MustSync(t, sink.Step{Sink: s, Force: true}, set(after))
	if len(pl.Add) != 1 || len(pl.Remove) != 1 {
		t.Fatalf("plan adds %d and removes %d; want 1 and 1", len(pl.Add), len(pl.Remove))
	}
	ran := cmds.Calls(t)[calls:]
	if len(ran) > 4 {
		t.Errorf("one address changed ran %d processes, want at most 4:\n%s", len(ran), joinCalls(ran))
	}
	if slices.ContainsFunc(ran, func(c []string) bool { return strings.HasSuffix(c[0], "restore") }) {
		t.Errorf("the chains did not change, yet a restore ran:\n%s", joinCalls(ran))
	}
	if got := save(t, p); got != rulesBefore {
		t.Errorf("chains changed (-before +after):\n%s", cmp.Diff(rulesBefore, got))
	}
	members := sh(t, p, "ipset", "save", name)
	if strings.Contains(members, " "+all[0].Addr().String()+"\n") || !strings.Contains(members, " "+all[100_000].Addr().String()+"\n") {
		t.Errorf("ipset %s still holds %s or lacks %s", name, all[0], all[100_000])
	}
	st, err := s.Current(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(set(after)[0].Entries(), st.Owned, cmpPrefix); diff != "" || len(st.Drift) != 0 {
		t.Errorf("read back (-want +got):\n%s\ndrift %q", diff, st.Drift)
	}
}

// A large change to a set still fills a staging set and swaps it in, and
// a set someone recreated with another shape is refilled, not edited.
func TestLiveIPSetLargeChangeSwaps(t *testing.T) {
	integration(t)
	p := netns.New(t)
	cmds := sinktest.NewCommands(t)
	s := wrappedIn(t, p, cmds, nil)
	all := bigPrefixes(2_000)
	set := func(ps []netip.Prefix) []plan.DesiredSet {
		return []plan.DesiredSet{{Name: "webhooks", Direction: plan.Ingress, Protocol: plan.TCP, Ports: []uint16{8443}, Prefixes: ps}}
	}
	var swapped atomic.Int32
	s.kernel = swapCounter{s.kernel, &swapped}
	swaps := func() int { return int(swapped.Load()) }
	cycle(t, s, set(all[:1000]))
	n := swaps()
	cycle(t, s, set(all[1000:])) // every member differs
	if swaps() == n {
		t.Error("a change of every member was not staged and swapped in")
	}
	// A hand-recreated set with a timeout on every member: its members
	// carry options we never write, so it is drift and is refilled.
	name := ipsetName(DefaultChainIn, plan.Entry{Set: "webhooks", Protocol: plan.TCP, Port: 8443}, 4)
	var script strings.Builder
	script.WriteString("flush " + name + "\n")
	for _, pr := range all[1000:] {
		script.WriteString("add " + name + " " + pr.String() + " nomatch\n")
	}
	file := filepath.Join(t.TempDir(), "ipset")
	if err := os.WriteFile(file, []byte(script.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	sh(t, p, "ipset", "restore", "-file", file)
	st, err := s.Current(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := "IPv4: ipset " + name + " holds 1000 members with options pdsafelist never sets; rewrite it"; !slices.Contains(st.Drift, want) {
		t.Errorf("drift %q; want %q", st.Drift, want)
	}
	cycle(t, s, set(all[1000:]))
	if got := sh(t, p, "ipset", "save", name); strings.Contains(got, "nomatch") || strings.Count(got, "\nadd ") != 1000 {
		t.Errorf("ipset %s not repaired:\n%.300s", name, got)
	}
}

func joinCalls(calls [][]string) string {
	var b strings.Builder
	for _, c := range calls {
		b.WriteString(strings.Join(c, " ") + "\n")
	}
	return b.String()
}

// A set staged anew while the plan adds a few addresses to a large one
// (Keep and Add apart, not copied into one list) holds both: here the
// chains need a restore (our jump was deleted by hand), so every set is
// refilled and swapped, and the one address added must be in it.
func TestLiveStagedSetHoldsKeepAndAdd(t *testing.T) {
	integration(t)
	p := netns.New(t)
	s := liveIn(t, p.Server, nil)
	all := bigPrefixes(1001)
	set := func(ps []netip.Prefix) []plan.DesiredSet {
		return []plan.DesiredSet{{Name: "webhooks", Direction: plan.Ingress, Protocol: plan.TCP, Ports: []uint16{8443}, Prefixes: ps}}
	}
	cycle(t, s, set(all[:1000]))
	sh(t, p, "iptables", "-F", "INPUT") // our jump
	pl := cycle(t, s, set(all))
	if len(pl.Add) != 1 || len(pl.Keep) != 1000 {
		t.Fatalf("plan adds %d and keeps %d; want 1 and 1000", len(pl.Add), len(pl.Keep))
	}
	name := ipsetName(DefaultChainIn, plan.Entry{Set: "webhooks", Protocol: plan.TCP, Port: 8443}, 4)
	members := sh(t, p, "ipset", "save", name)
	for _, pr := range []netip.Prefix{all[0], all[999], all[1000]} {
		if !strings.Contains(members, " "+pr.Addr().String()+"\n") {
			t.Errorf("ipset %s lacks %s after the restore", name, pr)
		}
	}
	if n := strings.Count(members, "\nadd "); n != 1001 {
		t.Errorf("ipset %s holds %d members, want 1001", name, n)
	}
	if !strings.Contains(sh(t, p, "iptables", "-S", "INPUT"), "-j "+DefaultChainIn) {
		t.Error("the jump was not repaired")
	}
}
