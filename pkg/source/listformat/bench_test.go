package listformat

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"net/netip"
	"testing"
)

// BenchmarkParse100k reads one list at the per-list cap, as the http and
// file sources do.
func BenchmarkParse100k(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	addrs := make([]string, MaxEntries)
	for i := range addrs {
		v := r.Uint32()&0x00ffffff | uint32(11+r.IntN(89))<<24
		addrs[i] = netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}).String()
	}
	data, _ := json.Marshal(addrs)
	p, err := New("json", "")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("Parse", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := p.Parse(context.Background(), data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Addresses", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := p.Addresses(context.Background(), data); err != nil {
				b.Fatal(err)
			}
		}
	})
}
