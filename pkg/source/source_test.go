package source

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestMerge(t *testing.T) {
	p := netip.MustParsePrefix
	got := Merge([]Address{
		{Prefix: p("2001:db9::1/128"), TTL: time.Minute},
		{Prefix: p("44.2.2.7/24")}, // host bits are masked
		{Prefix: p("193.0.2.1/32"), TTL: time.Minute},
		{Prefix: p("44.2.2.0/24"), TTL: time.Hour},
		{Prefix: p("193.0.2.1/32"), TTL: 2 * time.Minute},
		{Prefix: p("193.0.2.0/24")},
		{Prefix: p("2001:db9::1/128"), TTL: time.Second},
	})
	want := []Address{
		{Prefix: p("44.2.2.0/24"), TTL: time.Hour},
		{Prefix: p("193.0.2.0/24")},
		{Prefix: p("193.0.2.1/32"), TTL: 2 * time.Minute},
		{Prefix: p("2001:db9::1/128"), TTL: time.Minute},
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateComparable(netip.Prefix{})); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if got := Merge(nil); len(got) != 0 {
		t.Errorf("Merge(nil) = %v", got)
	}
}

// A list of a million addresses is merged in place: no union map, no
// second slice.
func TestMergeAllocatesNothing(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	src := make([]Address, 10_000)
	for i := range src {
		v := r.Uint32N(5000)
		src[i] = Address{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{44, 2, byte(v >> 8), byte(v)}), 32), TTL: time.Duration(r.IntN(3)) * time.Second}
	}
	addrs := make([]Address, len(src))
	allocs := testing.AllocsPerRun(3, func() {
		copy(addrs, src)
		Merge(addrs)
	})
	if allocs > 0 {
		t.Errorf("Merge of %d addresses: %.0f allocations, want 0", len(src), allocs)
	}
}
