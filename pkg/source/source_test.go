package source

import (
	"math/rand/v2"
	"net/netip"
	"runtime"
	"slices"
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

// randomV4 draws n IPv4 prefixes with host bits, duplicates and nesting
// common, all with one TTL, as an HTTP or file list gives them.
func randomV4(r *rand.Rand, n int, ttl time.Duration) []Address {
	out := make([]Address, n)
	for i := range out {
		b := [4]byte{44, byte(r.IntN(3)), byte(r.IntN(4)), byte(r.IntN(256))}
		out[i] = Address{Prefix: netip.PrefixFrom(netip.AddrFrom4(b), 20+r.IntN(13)), TTL: ttl}
	}
	return out
}

// The integer-key sort of same-TTL IPv4 lists gives exactly what the
// general sort gives.
func TestMergeV4MatchesGeneral(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 8))
	for round := range 200 {
		in := randomV4(r, r.IntN(300), time.Duration(r.IntN(2))*time.Minute)
		want := mergeGeneral(mask(slices.Clone(in)))
		got := Merge(slices.Clone(in))
		if diff := cmp.Diff(want, got, cmpopts.EquateComparable(netip.Prefix{})); diff != "" {
			t.Fatalf("round %d (-general +Merge):\n%s", round, diff)
		}
	}
}

// An HTTP list of IPv4 addresses is sorted as integer keys: one slice of
// 8 bytes an address, never a second slice of addresses.
func TestMergeV4Allocations(t *testing.T) {
	src := randomV4(rand.New(rand.NewPCG(1, 2)), 10_000, 0)
	addrs := make([]Address, len(src))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	copy(addrs, src)
	Merge(addrs)
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 9*uint64(len(src)) {
		t.Errorf("Merge of %d IPv4 addresses allocated %d bytes, want about 8 an address", len(src), got)
	}
}

func BenchmarkMerge100k(b *testing.B) {
	src := make([]Address, 100_000)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range src {
		v := r.Uint32()&0x00ffffff | uint32(11+r.IntN(89))<<24
		src[i] = Address{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), 32)}
	}
	addrs := make([]Address, len(src))
	b.ReportAllocs()
	for b.Loop() {
		copy(addrs, src)
		Merge(addrs)
	}
}

func mask(addrs []Address) []Address {
	for i := range addrs {
		addrs[i].Prefix = addrs[i].Prefix.Masked()
	}
	return addrs
}

// Release lets the addresses go and keeps their count, also when called
// twice; a failed or empty result counts none.
func TestReleaseKeepsCount(t *testing.T) {
	r := Result{Addresses: []Address{{Prefix: netip.MustParsePrefix("193.0.2.1/32")}, {Prefix: netip.MustParsePrefix("193.0.2.2/32")}}}
	r.Release()
	if r.Addresses != nil || r.Len() != 2 {
		t.Fatalf("after Release: %d addresses kept, Len %d, want none kept and Len 2", len(r.Addresses), r.Len())
	}
	r.Release()
	if r.Len() != 2 {
		t.Errorf("second Release: Len %d, want 2", r.Len())
	}
	var empty Result
	empty.Release()
	if empty.Len() != 0 {
		t.Errorf("empty result: Len %d after Release", empty.Len())
	}
}
