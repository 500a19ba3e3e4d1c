package nftables

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go4.org/netipx"
)

// randomPrefixes are n prefixes of one family crowded near both ends of
// it and around a 64-bit boundary, so merges, adjacency and the last
// address are all met.
func randomPrefixes(r *rand.Rand, n int, v6 bool) []netip.Prefix {
	var out []netip.Prefix
	for range n {
		var p netip.Prefix
		if v6 {
			var b [16]byte
			switch r.IntN(3) {
			case 0: // low
				b[15] = byte(r.IntN(8))
			case 1: // high
				for i := range b {
					b[i] = 0xff
				}
				b[15] = byte(0xf8 | r.IntN(8))
			default: // across the middle of the address
				for i := 8; i < 16; i++ {
					b[i] = 0xff
				}
				b[7] = byte(r.IntN(2))
				b[15] -= byte(r.IntN(4))
			}
			p = netip.PrefixFrom(netip.AddrFrom16(b), 120+r.IntN(9))
			if r.IntN(20) == 0 {
				p = netip.PrefixFrom(netip.AddrFrom16(b), r.IntN(129))
			}
		} else {
			v := uint32(r.IntN(64))
			if r.IntN(2) == 0 {
				v = ^v
			}
			p = netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), 27+r.IntN(6))
			if r.IntN(20) == 0 {
				p = netip.PrefixFrom(p.Addr(), r.IntN(33))
			}
		}
		out = append(out, p.Masked())
	}
	return out
}

// The integer spans merge exactly as netipx's ranges do (the reading they
// replaced), and the in-place checks agree with merging a copy.
func TestSpansAgreeWithNetipx(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	for i := range 2000 {
		v6 := i%2 == 1
		ps := randomPrefixes(r, 1+r.IntN(12), v6)
		var ss []span
		var rs []netipx.IPRange
		for _, p := range ps {
			sp := spanOfPrefix(p)
			if got, want := sp.ipRange(v6), netipx.RangeOfPrefix(p); got != want {
				t.Fatalf("spanOfPrefix(%s) = %s, want %s", p, got, want)
			}
			ss = append(ss, sp)
			rs = append(rs, netipx.RangeOfPrefix(p))
		}
		raw := slices.Clone(ss)
		slices.SortFunc(raw, span.compare)
		merged := mergeSpans(slices.Clone(ss))
		var got []netipx.IPRange
		for _, s := range merged {
			got = append(got, s.ipRange(v6))
		}
		want := mergeRanges(rs)
		if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netipx.IPRange) bool { return a == b })); diff != "" {
			t.Fatalf("mergeSpans(%v) (-netipx +spans):\n%s", ps, diff)
		}
		if !equalMerged(raw, merged) {
			t.Fatalf("equalMerged(%v, its merge) = false", ps)
		}
		if len(merged) > 1 && equalMerged(raw, merged[1:]) {
			t.Fatalf("equalMerged(%v, its merge less one) = true", ps)
		}
		if maximalSpans(raw) != slices.Equal(raw, merged) {
			t.Fatalf("maximalSpans(%v) = %v", raw, maximalSpans(raw))
		}
	}
}

func TestNumEdges(t *testing.T) {
	for _, c := range []struct {
		a    string
		v6   bool
		next string // "" when there is none
	}{
		{"255.255.255.255", false, ""},
		{"255.255.255.254", false, "255.255.255.255"},
		{"0.0.0.255", false, "0.0.1.0"},
		{"::ffff:ffff:ffff:ffff", true, "0:0:0:1::"},
		{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true, ""},
	} {
		a := numOfAddr(netip.MustParseAddr(c.a))
		n, ok := a.next(c.v6)
		if ok != (c.next != "") || (ok && n.addr(c.v6) != netip.MustParseAddr(c.next)) {
			t.Errorf("next(%s) = %s, %v; want %q", c.a, n.addr(c.v6), ok, c.next)
		}
		if ok {
			if p, ok := n.prev(); !ok || p != a {
				t.Errorf("prev(next(%s)) = %s, %v", c.a, p.addr(c.v6), ok)
			}
		}
	}
	if _, ok := (num{}).prev(); ok {
		t.Error("prev(0) exists")
	}
}

// A dump's points read as the same intervals in whatever order they come:
// the kernel's (highest first), ascending, or shuffled (sorted first); a
// broken interval is an error in every order.
func TestPointsAnyOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 9))
	v4 := func(s string) num { return numOfAddr(netip.MustParseAddr(s)) }
	pt := func(s string, end bool) point { return point{a: v4(s), n: 4, end: end} }
	read := func(pts []point) ([]span, error) {
		ps := &points{}
		for _, p := range pts {
			ps.add(p)
		}
		return ps.spans(false)
	}
	orders := func(pts []point) map[string][]point {
		asc := slices.Clone(pts)
		slices.SortFunc(asc, point.compare)
		desc := slices.Clone(asc)
		slices.Reverse(desc)
		shuffled := slices.Clone(asc)
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		return map[string][]point{"descending": desc, "ascending": asc, "shuffled": shuffled}
	}
	// Enough intervals for several chunks, an end at 0 with no start, two
	// adjacent intervals and one open to the last address.
	var pts []point
	var want []span
	pts = append(pts, pt("0.0.0.0", true))
	for i := range 3*pointChunk + 17 {
		from := num{lo: uint64(0x0b000000 + 4*i)}
		to := num{lo: from.lo + uint64(i%2)}
		pts = append(pts, point{a: from, n: 4}, point{a: num{lo: to.lo + 1}, n: 4, end: true})
		want = append(want, span{from, to})
	}
	pts = append(pts, pt("200.0.0.0", false), pt("200.0.0.1", true), pt("200.0.0.1", false), pt("200.0.0.2", true), pt("255.0.0.0", false))
	want = append(want, span{v4("200.0.0.0"), v4("200.0.0.0")}, span{v4("200.0.0.1"), v4("200.0.0.1")}, span{v4("255.0.0.0"), v4("255.255.255.255")})
	for name, o := range orders(pts) {
		got, err := read(o)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("%s: %d spans, %v; want %d", name, len(got), err, len(want))
		}
	}
	for name, bad := range map[string][]point{
		"start after start":   {pt("10.0.0.1", false), pt("10.0.0.2", false), pt("10.0.0.9", true)},
		"two starts at a key": {pt("10.0.0.5", false), pt("10.0.0.5", true), pt("10.0.0.5", false)},
	} {
		for order, o := range orders(append(slices.Clone(pts), bad...)) {
			if _, err := read(o); err == nil {
				t.Errorf("%s, %s: no error", name, order)
			}
		}
	}
}
