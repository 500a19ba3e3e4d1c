package state

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/source"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/heappeak"
)

// retainedHeap is the live heap f's result keeps, after a collection.
func retainedHeap(f func() any) uint64 {
	runtime.GC()
	base := heappeak.InUse()
	v := f()
	runtime.GC()
	after := heappeak.InUse()
	runtime.KeepAlive(v)
	if after > base {
		return after - base
	}
	return 0
}

// Issue 24: a no-change run at a million addresses held the state as 88
// bytes an address for the whole run (84 MB), and loading it held the
// file, a string copy of its prefixes and the addresses at once. At
// 200,000 addresses of one list: the memory a loaded state keeps, and the
// peak while it loads, per address.
func TestStateMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates on purpose")
	}
	const n = 200_000
	path := filepath.Join(t.TempDir(), FileName)
	f := New()
	f.Observe("big", scaleSeen(n), nil, t0, Window{Grace: time.Hour})
	if err := f.Save(path); err != nil {
		t.Fatal(err)
	}
	f = nil
	var loaded *File
	load := func() {
		var err error
		if loaded, err = Load(path); err != nil {
			t.Fatal(err)
		}
	}
	peak := heappeak.Of(load)
	loaded = nil
	kept := retainedHeap(func() any { load(); return loaded })
	if got := loaded.Sets["big"].Len(); got != n {
		t.Fatalf("loaded %d addresses, want %d", got, n)
	}
	// Before: 88 bytes an address kept, about 130 at the peak. Now 12
	// kept (an IPv4 address, its length and the index of its times);
	// while it loads, the file's bytes (about 14 an address) and the JSON
	// decoder's copy of them besides: about 55.
	const keptMax, peakMax = 16, 80
	t.Logf("per address: kept %d bytes, load peak %d bytes", kept/n, peak/n)
	if kept > keptMax*n {
		t.Errorf("a loaded state keeps %d bytes an address; want at most %d", kept/n, keptMax)
	}
	if peak > peakMax*n {
		t.Errorf("loading peaked at %d bytes an address; want at most %d", peak/n, peakMax)
	}
}

// BenchmarkStateLoad loads a state file of a million addresses of one list
// and of 100,000 addresses a DNS set saw over 12 runs (groups of their own
// times); kept-B/address is what the loaded state holds.
func BenchmarkStateLoad(b *testing.B) {
	for _, tt := range []struct {
		name    string
		n, runs int
	}{
		{"list-1M", 1_000_000, 1},
		{"dns-100k-12-runs", 100_000, 12},
	} {
		b.Run(tt.name, func(b *testing.B) {
			all := scaleSeen(tt.n)
			f := New()
			for r := range tt.runs {
				part := all[:(r+1)*tt.n/tt.runs]
				for i := range part {
					part[i].TTL = time.Duration(30+r) * time.Second
				}
				f.Observe("set", part, nil, t0.Add(time.Duration(r)*time.Minute), Window{Grace: time.Hour})
			}
			path := filepath.Join(b.TempDir(), FileName)
			if err := f.Save(path); err != nil {
				b.Fatal(err)
			}
			f = nil
			var loaded *File
			kept := retainedHeap(func() any {
				var err error
				if loaded, err = Load(path); err != nil {
					b.Fatal(err)
				}
				return loaded
			})
			if loaded.Sets["set"].Len() != tt.n {
				b.Fatalf("loaded %d addresses", loaded.Sets["set"].Len())
			}
			loaded = nil
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := Load(path); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(kept)/float64(tt.n), "kept-B/address")
		})
	}
}

// Issue 24: the fetch memory keeps every list's last answer for the whole
// run, a million prefixes at 32 bytes each (30 MB) before; packed, an
// IPv4 address takes 5. What Recall gives back is what was remembered.
func TestFetchMemoryPacked(t *testing.T) {
	const lists, n = 10, 20_000
	answers := make([][]netip.Prefix, lists)
	for i := range answers {
		for j, s := range scaleSeen(n) {
			p := s.Prefix
			if j%1000 == 0 {
				p = netip.PrefixFrom(netip.AddrFrom16([16]byte{0x26, 0x00, byte(i), byte(j >> 8), byte(j)}), 48)
			}
			answers[i] = append(answers[i], netip.PrefixFrom(p.Addr().Next(), p.Bits()).Masked())
		}
		slices.SortFunc(answers[i], plan.ComparePrefix)
	}
	var f *Fetches
	kept := retainedHeap(func() any {
		f = NewFetches()
		for i, a := range answers {
			f.Remember(fmt.Sprint("list ", i), source.FetchRecord{ETag: `"x"`, Answer: a, Answered: t0})
		}
		return f
	})
	for i, a := range answers {
		got, ok := f.Recall(fmt.Sprint("list ", i))
		if diff := cmp.Diff(a, got.Answer, cmpOpts...); !ok || diff != "" || got.ETag != `"x"` {
			t.Fatalf("list %d: recalled %v (-want +got):\n%s", i, ok, diff)
		}
	}
	t.Logf("%d bytes an address", kept/(lists*n))
	if kept > 8*lists*n {
		t.Errorf("the fetch memory keeps %d bytes an address; want at most 8", kept/(lists*n))
	}
}

// A format 2 file as the releases before the compact memory wrote it loads
// to the same addresses, groups of their own times and TTLs included; a
// group whose string JSON escapes reads as the same text.
func TestLoadFormat2AsWritten(t *testing.T) {
	data := []byte(`{
 "format_version": 2,
 "sets": {
  "events": {
   "groups": [
    {
     "first": 1764000000,
     "ttl": 30,
     "prefixes": "44.0.0.2 44.0.0.4 2001:db9::/48"
    },
    {
     "first": 1763990000,
     "last": 1763999000,
     "prefixes": "203.1.113.0\u002f24 ::ffff:1.2.3.4"
    }
   ]
  }
 }
}
`)
	f, err := Decode(data, []byte(`{"last_success":{"events":1764000100}}`))
	if err != nil {
		t.Fatal(err)
	}
	success, first := time.Unix(1764000100, 0).UTC(), time.Unix(1764000000, 0).UTC()
	old, last := time.Unix(1763990000, 0).UTC(), time.Unix(1763999000, 0).UTC()
	want := []Address{
		{Prefix: netip.MustParsePrefix("44.0.0.2/32"), FirstSeen: first, LastSeen: success, TTLSeconds: 30},
		{Prefix: netip.MustParsePrefix("44.0.0.4/32"), FirstSeen: first, LastSeen: success, TTLSeconds: 30},
		{Prefix: netip.MustParsePrefix("2001:db9::/48"), FirstSeen: first, LastSeen: success, TTLSeconds: 30},
		{Prefix: netip.MustParsePrefix("203.1.113.0/24"), FirstSeen: old, LastSeen: last},
		{Prefix: netip.MustParsePrefix("::ffff:1.2.3.4/128"), FirstSeen: old, LastSeen: last},
	}
	if diff := cmp.Diff(want, f.Sets["events"].Addresses(), roundTripOpts...); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// The compact memory gives back every prefix it was given, IPv4, IPv6 and
// IPv4-mapped IPv6 alike, and its order is plan.ComparePrefix's, which the
// merges of Observe rely on.
func TestMemoryOrderAndRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var ps []netip.Prefix
	for range 3000 {
		var p netip.Prefix
		switch r.IntN(3) {
		case 0:
			p = netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(r.IntN(256)), byte(r.IntN(4)), 0, byte(r.IntN(256))}), 8+r.IntN(25))
		case 1:
			p = netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, byte(r.IntN(4)), 15: byte(r.IntN(256))}), 16+r.IntN(113))
		default:
			p = netip.PrefixFrom(netip.AddrFrom16([16]byte{10: 0xff, 11: 0xff, 12: byte(r.IntN(256)), 15: 1}), 96+r.IntN(33))
		}
		ps = append(ps, p.Masked())
	}
	var m memory
	for i, p := range ps {
		m.push(p, uint32(i))
	}
	m.push(netip.Prefix{}, 0) // not remembered
	m.latest(func(a, b uint32) bool { return a > b })
	want := slices.Clone(ps)
	slices.SortFunc(want, plan.ComparePrefix)
	want = slices.Compact(want)
	var got []netip.Prefix
	for i := range m.len() {
		e := m.at(i)
		if ps[e.stamp] != e.prefix {
			t.Fatalf("%v came back with the stamp of %v", e.prefix, ps[e.stamp])
		}
		got = append(got, e.prefix)
	}
	if diff := cmp.Diff(want, got, cmpOpts...); diff != "" {
		t.Errorf("(-plan.ComparePrefix order +memory):\n%s", diff)
	}
}

// The everyday run at scale: a list of 200,000 addresses, one of them
// first seen in this run, so the state file has two groups of times.
// Saving it wrote each group from a copy of its addresses as 32-byte
// prefixes (32 MB at a million, at the end of such a run); one group, as
// a no-change run has, never did. Peak heap of the save, per address.
func TestSaveTwoGroupsCopiesNoPrefixes(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates on purpose")
	}
	const n = 200_000
	dir := t.TempDir()
	seen := scaleSeen(n + 1)
	f := New()
	f.Observe("big", seen[:n], nil, t0, Window{Grace: time.Hour})
	f.Observe("big", seen, nil, t0.Add(time.Minute), Window{Grace: time.Hour})
	var v fileV2
	save := func(name string) {
		if err := f.Save(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	peak := heappeak.Of(func() { save("one") })
	v, _ = f.layout()
	if g := len(v.Sets["big"].Groups); g != 2 {
		t.Fatalf("%d groups of times, want 2", g)
	}
	// The file itself, about 14 bytes an address, is made once as the
	// groups' text and once more as JSON of the rest; a copy as
	// prefixes added 32 more.
	t.Logf("save peak: %d bytes an address", peak/n)
	if peak > 24*n {
		t.Errorf("saving two groups peaked at %d bytes an address; want at most 24", peak/n)
	}
	back, err := Load(filepath.Join(dir, "one"))
	if err != nil {
		t.Fatal(err)
	}
	if got := back.Sets["big"].Len(); got != n+1 {
		t.Fatalf("loaded %d addresses, want %d", got, n+1)
	}
}

// Written a pass a group or copied by group, a state file is the same,
// byte for byte: lists seen over several runs (so several groups of
// times, one address in several), DNS sets with other TTLs, both
// families.
func TestLayoutPassesAsCopies(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 9))
	for c := range 200 {
		f := New()
		for run := range 1 + r.IntN(6) {
			var seen []Seen
			for range r.IntN(60) {
				var p netip.Prefix
				if r.IntN(5) == 0 {
					a := netip.MustParseAddr("2001:db9::").As16()
					a[15] = byte(r.IntN(40))
					p = netip.PrefixFrom(netip.AddrFrom16(a), 128)
				} else {
					p = netip.PrefixFrom(netip.AddrFrom4([4]byte{44, 0, 0, byte(r.IntN(60))}), 32)
				}
				seen = append(seen, Seen{Prefix: p, TTL: time.Duration(r.IntN(2)*30) * time.Second})
			}
			f.Observe("set", seen, nil, t0.Add(time.Duration(run)*time.Minute), Window{Grace: time.Hour})
		}
		passes, _, err := f.encode()
		if err != nil {
			t.Fatal(err)
		}
		old := layoutPasses
		layoutPasses = 0
		copies, _, err := f.encode()
		layoutPasses = old
		if err != nil {
			t.Fatal(err)
		}
		if string(passes) != string(copies) {
			t.Fatalf("case %d (-copied by group +a pass a group):\n%s", c, cmp.Diff(string(copies), string(passes)))
		}
	}
}
