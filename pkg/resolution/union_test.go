package resolution

import (
	"math/rand/v2"
	"net/netip"
	"runtime"
	"slices"
	"testing"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	"go4.org/netipx"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/source"
)

// randomAddresses draws clustered public prefixes, so overlaps, nesting,
// duplicates and adjacency across sources are common, in both families.
func randomAddresses(r *rand.Rand, n int) []source.Address {
	out := make([]source.Address, n)
	for i := range out {
		if r.IntN(4) == 0 {
			var b [16]byte
			b[0], b[1], b[2], b[3], b[15] = 0x20, 0x01, 0x0d, 0xb9, byte(r.IntN(64))
			b[14] = byte(r.IntN(2))
			out[i].Prefix = netip.PrefixFrom(netip.AddrFrom16(b), 120+r.IntN(9)).Masked()
			continue
		}
		b := [4]byte{44, 1, byte(r.IntN(2)), byte(r.IntN(256))}
		out[i].Prefix = netip.PrefixFrom(netip.AddrFrom4(b), 24+r.IntN(9)).Masked()
	}
	return out
}

// The merge of sorted sources must give exactly what netipx's IPSetBuilder
// gives for their union, whether or not a source kept its list sorted.
func TestDesiredUnionMatchesIPSetBuilder(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 5))
	for round := range 300 {
		var b netipx.IPSetBuilder
		var results []source.Result
		for range 1 + r.IntN(5) {
			addrs := randomAddresses(r, 1+r.IntN(60))
			for _, a := range addrs {
				b.AddPrefix(a.Prefix)
			}
			if r.IntN(3) > 0 {
				addrs = source.Merge(addrs)
			}
			results = append(results, source.Result{Kind: "fake", Name: "s", Addresses: addrs})
		}
		set, err := b.IPSet()
		if err != nil {
			t.Fatal(err)
		}
		d, err := desired(spec, results, plan.DefaultLimits)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if diff := cmp.Diff(set.Prefixes(), d.Prefixes, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
			t.Fatalf("round %d (-netipx +desired):\n%s", round, diff)
		}
	}
}

// ten sorted lists of public /32s, as ten HTTP sources answer.
func tenLists(n int) []source.Result {
	r := rand.New(rand.NewPCG(1, 2))
	out := make([]source.Result, 10)
	for i := range out {
		addrs := make([]source.Address, n)
		for j := range addrs {
			v := r.Uint32()&0x00ffffff | uint32(11+r.IntN(89))<<24
			addrs[j].Prefix = netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), 32)
		}
		out[i] = source.Result{Kind: "http", Name: "list", Addresses: source.Merge(addrs)}
	}
	return out
}

// A set of a million addresses was copied into one slice and copied again
// to be sorted: twice the result's size, on top of the sources' lists.
// Merged from the sorted sources, only the result is allocated.
func TestDesiredAllocatesOnlyItsResult(t *testing.T) {
	results := tenLists(20_000)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	d, err := desired(spec, results, plan.DefaultLimits)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	result := uint64(200_000 * unsafe.Sizeof(netip.Prefix{}))
	if got := after.TotalAlloc - before.TotalAlloc; got > result+result/8 {
		t.Errorf("allocated %d bytes for a %d-byte result; want no copy of the input", got, result)
	}
	if !slices.IsSortedFunc(d.Prefixes, plan.ComparePrefix) || len(d.Prefixes) < 190_000 {
		t.Errorf("got %d prefixes, sorted %v", len(d.Prefixes), slices.IsSortedFunc(d.Prefixes, plan.ComparePrefix))
	}
}

func BenchmarkDesired1M(b *testing.B) {
	results := tenLists(100_000)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := desired(spec, results, plan.DefaultLimits); err != nil {
			b.Fatal(err)
		}
	}
}
