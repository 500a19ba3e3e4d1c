package iptables

import (
	"context"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/testutil"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/netns"
)

// stamped gives s a stamp in a directory of its own and counts the -S
// reads it runs.
func stamped(t *testing.T, s *Live) (reads func() int, path string) {
	reads, _, path = stampedAll(t, s)
	return reads, path
}

// stampedAll is stamped, also counting every process the sink starts.
func stampedAll(t *testing.T, s *Live) (reads, procs func() int, path string) {
	t.Helper()
	s.stamp = newStamper(t.TempDir(), s.opts, s.name, s.ipt)
	if s.stamp == nil {
		t.Fatal("no stamper")
	}
	var mu sync.Mutex
	n, all := 0, 0
	run := s.run
	s.run = func(ctx context.Context, argv []string, stdin []byte) ([]byte, error) {
		mu.Lock()
		all++
		if slices.Contains(argv, "-S") {
			n++
		}
		mu.Unlock()
		return run(ctx, argv, stdin)
	}
	return func() int { mu.Lock(); defer mu.Unlock(); return n },
		func() int { mu.Lock(); defer mu.Unlock(); return all }, s.stamp.path
}

// Issue 24: the two -S processes of every run cost as much as the hand
// `iptables -S` plus `ipset add`. With iptables-nft, a run whose
// namespace's nf_tables generation has not moved since a verified read
// uses what that read printed; any change to the rules (a hand rule, a
// deleted jump, in either family) moves it and the next run reads, finds
// and repairs the drift.
func TestStampSkipsRulesReadsOnlyWhileNothingChanged(t *testing.T) {
	integration(t)
	p := netns.New(t)
	s := liveIn(t, p.Server, func(o *Options) { o.Enforce = "ingress" })
	reads, procs, path := stampedAll(t, s)
	all := bigPrefixes(1001)
	set := func(ps []netip.Prefix) []plan.DesiredSet {
		return []plan.DesiredSet{{Name: "webhooks", Direction: plan.Ingress, Protocol: plan.TCP, Ports: []uint16{8443}, Prefixes: ps}}
	}
	ctx := context.Background()
	current := func() plan.State {
		t.Helper()
		st, err := s.Current(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	step := func(what string, want int, f func()) {
		t.Helper()
		n := reads()
		f()
		if got := reads() - n; got != want {
			t.Errorf("%s: %d -S reads, want %d", what, got, want)
		}
	}
	step("first apply", 2, func() { cycle(t, s, set(all[:1000])) })
	step("no change, read and stamped", 2, func() { cycle(t, s, set(all[:1000])) })
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("no stamp after a verified read: %v", err)
	}
	step("no change, stamped", 0, func() { cycle(t, s, set(all[:1000])) })
	after := append(slices.Clone(all[1:1000]), all[1000])
	n := procs()
	step("one address changed in place", 0, func() { cycle(t, s, set(after)) })
	if got := procs() - n; got != 0 {
		t.Errorf("one address changed in place started %d processes, want none", got)
	}
	step("read back", 0, func() {
		if st := current(); len(st.Drift) != 0 || len(st.Owned) != 1000 {
			t.Errorf("read back %d entries, drift %q", len(st.Owned), st.Drift)
		}
	})

	for _, hand := range [][]string{
		{"iptables", "-I", DefaultChainIn, "1", "-s", "198.51.100.7", "-j", "ACCEPT"},
		{"ip6tables", "-F", "INPUT"}, // our jump
		{"iptables", "-F", DefaultChainIn},
	} {
		sh(t, p, hand...)
		step(strings.Join(hand, " "), 2, func() {
			if st := current(); len(st.Drift) == 0 {
				t.Errorf("%s: no drift", strings.Join(hand, " "))
			}
		})
		cycle(t, s, set(after))
		// The repair moved the generation: one read, then stamped.
		step("after the repair", 2, func() { current() })
		step("after the repair, stamped", 0, func() {
			if st := current(); len(st.Drift) != 0 {
				t.Errorf("after %s: still drift %q", strings.Join(hand, " "), st.Drift)
			}
		})
		if out := sh(t, p, "iptables", "-S", DefaultChainIn); strings.Contains(out, "198.51.100.7") {
			t.Errorf("the hand rule is still there:\n%s", out)
		}
	}

	// Garbage, or another sink's, is no stamp: a full read.
	for _, forged := range []string{"{", `{"format":1,"sink":"other"}`} {
		if err := os.WriteFile(path, []byte(forged), 0o600); err != nil {
			t.Fatal(err)
		}
		step("forged stamp "+forged, 2, func() { current() })
	}
	// A read-only run writes no stamp.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Current(sink.ReadOnly(ctx)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("a read-only read wrote the stamp: %v", err)
	}
}

// The legacy backend's changes move no nf_tables generation: its rules
// are read on every run and never stamped.
func TestStampNeverWithLegacy(t *testing.T) {
	testutil.Integration(t, true, "iptables-legacy", "ip6tables-legacy", "iptables-legacy-restore", "ip6tables-legacy-restore", "ipset", "ip")
	p := netns.New(t)
	s := liveIn(t, p.Server, func(o *Options) {
		in := "ip netns exec " + p.Server + " "
		o.IPTables, o.IP6Tables = in+"iptables-legacy", in+"ip6tables-legacy"
		o.IPTablesRestore, o.IP6TablesRestore = in+"iptables-legacy-restore", in+"ip6tables-legacy-restore"
	})
	reads, path := stamped(t, s)
	d := []plan.DesiredSet{{Name: "webhooks", Direction: plan.Ingress, Protocol: plan.TCP, Ports: []uint16{8443}, Prefixes: bigPrefixes(300)}}
	cycle(t, s, d)
	for range 2 {
		n := reads()
		cycle(t, s, d)
		if got := reads() - n; got != 2 {
			t.Errorf("a legacy no-change run read -S %d times, want 2", got)
		}
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("a legacy read was stamped: %v", err)
	}
}
