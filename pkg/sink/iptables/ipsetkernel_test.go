package iptables

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/testutil"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/heappeak"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/netns"
)

// A snapshot keeps its members packed after Current (8 bytes an IPv4
// member, not 32): the members read back the same, in the same order,
// and the apply's in-place decision is the one it made unpacked.
func TestPackedMembersDecideAsUnpacked(t *testing.T) {
	r := rand.New(rand.NewPCG(24, 1))
	random := func(n int) []netip.Prefix {
		out := make([]netip.Prefix, n)
		for i := range out {
			out[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{11, byte(r.IntN(4)), byte(r.IntN(256)), byte(r.IntN(256))}), 20+r.IntN(13)).Masked()
		}
		return sortPrefixes(out)
	}
	key := plan.Entry{Set: "webhooks", Direction: plan.Ingress, Protocol: plan.TCP, Port: 443}
	for i := range 200 {
		have := random(r.IntN(3000))
		// The wanted set is have with a few or many members changed.
		want := slices.Clone(have)
		for range r.IntN(1 + r.IntN(2)*2000) {
			if len(want) > 0 && r.IntN(2) == 0 {
				k := r.IntN(len(want))
				want = slices.Delete(want, k, k+1)
			} else {
				want = append(want, random(1)...)
			}
		}
		want = sortPrefixes(want)
		es := make([]plan.Entry, len(want))
		for j, p := range want {
			es[j] = key
			es[j].Prefix = p
		}
		g := &group{key: key, fam: 4, parts: [][]plan.Entry{es}, n: len(es)}
		m := setMembers{prefixes: have}
		p := m.packed()
		if len(have) > 0 && (p.prefixes != nil || len(p.v4) != len(have)) {
			t.Fatalf("case %d: packed holds %d prefixes and %d keys; want none and %d", i, len(p.prefixes), len(p.v4), len(have))
		}
		var back []netip.Prefix
		for j := range p.len() {
			back = append(back, p.at(j))
		}
		if !slices.Equal(back, have) {
			t.Fatalf("case %d: packed members read back differently", i)
		}
		snap := func(m setMembers) *liveSnapshot {
			return &liveSnapshot{members: map[string]setMembers{"s": m}, sets: map[string]setInfo{"s": {typ: "hash:net", family: 4, maxElem: 1 << 20}}}
		}
		c1, ok1 := inPlace(snap(m), 4, "s", g)
		c2, ok2 := inPlace(snap(p), 4, "s", g)
		if ok1 != ok2 || !cmp.Equal(c1, c2, cmp.AllowUnexported(setChange{}), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })) {
			t.Fatalf("case %d: unpacked %v %+v, packed %v %+v", i, ok1, c1, ok2, c2)
		}
	}
	// IPv6 members stay as they are.
	six := []netip.Prefix{netip.MustParsePrefix("2001:db9::/64")}
	if p := (setMembers{prefixes: six}).packed(); !slices.Equal(p.prefixes, six) || p.v4 != nil {
		t.Errorf("IPv6 members packed: %+v", p)
	}
}

// Issue 24: what Current returns is kept to the end of the run, and its
// snapshot held every member of our sets as a 32-byte prefix beside the
// 56-byte entry made of it (at a million members, 30 MB of the no-change
// run's peak), and the read made 48 bytes a member more (the prefixes and
// their sort keys). Netlink now reads an IPv4 set as 8-byte keys, sorts
// them and makes the entries from them, and the snapshot keeps them. Not
// parallel: it measures the heap.
func TestLiveSnapshotKeepsMembersPacked(t *testing.T) {
	testutil.Integration(t, true, "iptables", "ip6tables", "iptables-restore", "ip6tables-restore", "ipset", "ip")
	const n = 200_000
	p := netns.New(t)
	s := liveIn(t, p.Server, nil)
	cycle(t, s, []plan.DesiredSet{{Name: "webhooks", Direction: plan.Ingress, Protocol: plan.TCP, Ports: []uint16{8443}, Prefixes: bigPrefixes(n)}})
	var st plan.State
	var err error
	peak := int(heappeak.Of(func() { st, err = s.Current(context.Background()) }))
	if err != nil {
		t.Fatal(err)
	}
	st = plan.State{}
	runtime.GC()
	before := heappeak.InUse()
	if st, err = s.Current(context.Background()); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	kept := int(heappeak.InUse()) - int(before)
	runtime.KeepAlive(st)
	if len(st.Owned) != n {
		t.Fatalf("read back %d entries, want %d", len(st.Owned), n)
	}
	// 56 bytes an entry, 8 a packed member, and some room.
	t.Logf("Current keeps %d bytes a member, peaks at %d", kept/n, peak/n)
	// Read into 8-byte keys, sorted in place of 16 bytes of scratch, no
	// prefix made of them: 104 bytes a member at the peak before.
	if peak > 84*n {
		t.Errorf("Current's heap peaked at %d MB for %d members (%d bytes each); want at most 84 bytes each", peak>>20, n, peak/n)
	}
	if kept > 76*n {
		t.Errorf("Current keeps %d MB for %d members (%d bytes each); want at most 76 bytes each", kept>>20, n, kept/n)
	}
}
