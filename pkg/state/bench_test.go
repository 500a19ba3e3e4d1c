package state

import (
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkStateBytesPerAddress reports the state file's size per address
// (issue 15: at most 40) for 100k addresses of a list and of a DNS set
// seen over several runs, IPv4 and IPv6.
func BenchmarkStateBytesPerAddress(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	v4 := func() netip.Prefix {
		a := netip.AddrFrom4([4]byte{44, byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(256))})
		return netip.PrefixFrom(a, 32)
	}
	v6 := func() netip.Prefix {
		var x [16]byte
		x[0], x[1] = 0x26, 0x00
		for i := 2; i < 16; i++ {
			x[i] = byte(rng.IntN(256))
		}
		return netip.PrefixFrom(netip.AddrFrom16(x), 128)
	}
	for _, tt := range []struct {
		name string
		gen  func() netip.Prefix
		runs int // runs over which the addresses were first seen
	}{
		{"ipv4-list", v4, 1},
		{"ipv4-dns-12-runs", v4, 12},
		{"ipv6-list", v6, 1},
	} {
		b.Run(tt.name, func(b *testing.B) {
			const n = 100_000
			f := New()
			w := Window{Grace: time.Hour}
			var all []Seen
			for r := range tt.runs {
				for range n / tt.runs {
					all = append(all, Seen{Prefix: tt.gen(), TTL: 30 * time.Second})
				}
				f.Observe("set", all, nil, t0.Add(time.Duration(r)*time.Minute), w)
			}
			path := filepath.Join(b.TempDir(), FileName)
			b.ResetTimer()
			for range b.N {
				os.Remove(path)
				if err := f.Save(path); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			fi, err := os.Stat(path)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(fi.Size())/float64(f.Sets["set"].Len()), "bytes/address")
		})
	}
}
