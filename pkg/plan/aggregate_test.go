package plan

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go4.org/netipx"
)

// randomPrefixes draws clustered prefixes so that overlaps, nesting and
// adjacency are common, in both families.
func randomPrefixes(r *rand.Rand, n int) []netip.Prefix {
	out := make([]netip.Prefix, n)
	for i := range out {
		if r.IntN(4) == 0 {
			var b [16]byte
			b[0], b[1], b[15] = 0x20, 0x01, byte(r.IntN(64))
			b[14] = byte(r.IntN(2))
			out[i] = netip.PrefixFrom(netip.AddrFrom16(b), 120+r.IntN(9)).Masked()
			continue
		}
		b := [4]byte{192, 0, byte(r.IntN(2)), byte(r.IntN(256))}
		out[i] = netip.PrefixFrom(netip.AddrFrom4(b), 24+r.IntN(9)).Masked()
	}
	return out
}

// Aggregate must give exactly what netipx's IPSetBuilder gives.
func TestAggregateMatchesIPSetBuilder(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	for round := range 300 {
		in := randomPrefixes(r, 1+r.IntN(200))
		var b netipx.IPSetBuilder
		for _, p := range in {
			b.AddPrefix(p)
		}
		set, err := b.IPSet()
		if err != nil {
			t.Fatal(err)
		}
		got, err := Aggregate(in)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(set.Prefixes(), got, cmpPrefix); diff != "" {
			t.Fatalf("round %d (-netipx +Aggregate):\n%s", round, diff)
		}
	}
}

func TestAggregateEdges(t *testing.T) {
	got, err := Aggregate(pfx("255.255.255.255/32", "::/128", "255.255.255.254/32", "::1/128"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(pfx("255.255.255.254/31", "::/127"), got, cmpPrefix); diff != "" {
		t.Errorf("family boundary (-want +got):\n%s", diff)
	}
}

func BenchmarkAggregate1M(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	in := make([]netip.Prefix, 1_000_000)
	for i := range in {
		v := r.Uint32()
		in[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), 32)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Aggregate(in); err != nil {
			b.Fatal(err)
		}
	}
}

// The aggregator trusts its caller's order only as far as it can check it:
// a prefix out of order, unmasked or invalid is refused, never merged into
// a wrong union.
func TestAggregatorRefusesBadInput(t *testing.T) {
	for _, tt := range []struct {
		name string
		in   []netip.Prefix
	}{
		{"out of order", pfx("44.1.0.8/32", "44.1.0.7/32")},
		{"IPv6 before IPv4", pfx("2001:db9::/48", "44.1.0.0/24")},
		{"host bits", []netip.Prefix{netip.PrefixFrom(netip.MustParseAddr("44.1.0.1"), 24)}},
		{"invalid", []netip.Prefix{{}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := NewAggregator(len(tt.in))
			var err error
			for _, p := range tt.in {
				if err = a.Add(p); err != nil {
					break
				}
			}
			if err == nil {
				t.Errorf("Add(%v) accepted, gave %v", tt.in, a.Prefixes())
			}
		})
	}
	a := NewAggregator(0)
	for _, p := range pfx("44.1.0.0/25", "44.1.0.0/25", "44.1.0.5/32", "44.1.0.128/25", "44.1.2.0/32") {
		if err := a.Add(p); err != nil {
			t.Fatal(err)
		}
	}
	if diff := cmp.Diff(pfx("44.1.0.0/24", "44.1.2.0/32"), a.Prefixes(), cmpPrefix); diff != "" {
		t.Errorf("sorted input with duplicates (-want +got):\n%s", diff)
	}
}
