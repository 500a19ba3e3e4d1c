package plan

import (
	"fmt"
	"net/netip"
	"testing"
	"unsafe"
)

// scaleSet is n distinct global /32s from 44.0.0.0 upwards, sorted, as
// Aggregate leaves them (no two adjacent, so none merge).
func scaleSet(name string, n int) DesiredSet {
	ps := make([]netip.Prefix, n)
	for i := range ps {
		v := uint32(44)<<24 + uint32(i)*2
		ps[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), 32)
	}
	return DesiredSet{Name: name, Direction: Ingress, Protocol: TCP, Ports: []uint16{443}, Prefixes: ps}
}

// scaleInputs are the two runs issue 15 measures: the first, into an empty
// sink, and one with no change, the sink holding every entry.
func scaleInputs(n int) map[string]Input {
	d := []DesiredSet{scaleSet("big", n)}
	// One address gone from the front, one new at the end (issue 24's
	// everyday change).
	moved := scaleSet("big", n+1)
	moved.Prefixes = moved.Prefixes[1:]
	// And the other way: one new at the front, the last one gone, so
	// the addition is met before any held entry is kept.
	front := scaleSet("big", n)
	front.Prefixes = append([]netip.Prefix{netip.MustParsePrefix("43.0.0.1/32")}, front.Prefixes[:n-1]...)
	return map[string]Input{
		"first":            {Sink: "s", Desired: d, Known: []string{"big"}},
		"no-change":        {Sink: "s", Desired: d, Current: State{Owned: d[0].Entries()}, Known: []string{"big"}},
		"one-change":       {Sink: "s", Desired: []DesiredSet{moved}, Current: State{Owned: d[0].Entries()}, Known: []string{"big"}},
		"one-change-front": {Sink: "s", Desired: []DesiredSet{front}, Current: State{Owned: d[0].Entries()}, Known: []string{"big"}},
	}
}

// BenchmarkCalculate shows the plan's cost per entry from 10k to 1M
// entries; linear growth keeps ns/entry and B/entry flat.
func BenchmarkCalculate(b *testing.B) {
	for _, run := range []string{"first", "no-change", "one-change", "one-change-front"} {
		for _, n := range []int{10_000, 100_000, 1_000_000} {
			in := scaleInputs(n)[run]
			b.Run(fmt.Sprintf("%s/%d", run, n), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					in.Calculate()
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/entry")
			})
		}
	}
}

// TestCalculateMemoryPerEntry holds Calculate to a budget per entry: the
// plan's own slices (Add, each entry once) and no hash map or extra copy
// of every entry (issue 15: a 1M-entry sync in < 400 MB).
func TestCalculateMemoryPerEntry(t *testing.T) {
	if testing.Short() {
		t.Skip("measures 100k entries")
	}
	const n = 100_000
	for run, in := range scaleInputs(n) {
		res := testing.Benchmark(func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				in.Calculate()
			}
		})
		perEntry := float64(res.AllocedBytesPerOp()) / n
		// An Entry is 56 bytes: a first run's Add, once; a run with no
		// change keeps the state it read and copies nothing.
		if perEntry > 64 {
			t.Errorf("%s: Calculate allocates %.0f bytes per entry, want <= 64", run, perEntry)
		}
	}
}

// TestEntrySize: a plan holds a million entries at scale, so each byte of
// Entry is a megabyte of a 1M-address run (issue 15). Direction and
// Protocol are one byte each; as strings they made an entry 88 bytes.
func TestEntrySize(t *testing.T) {
	if got := unsafe.Sizeof(Entry{}); got > 56 {
		t.Errorf("Entry is %d bytes, want <= 56", got)
	}
}

// TestEntryStringMatchesFormat keeps String (and so every fingerprint of a
// saved plan) byte for byte what fmt made of it.
func TestEntryStringMatchesFormat(t *testing.T) {
	for _, e := range []Entry{
		{Set: "api", Prefix: netip.MustParsePrefix("44.1.2.0/24"), Direction: Ingress, Protocol: TCP, Port: 443},
		{Set: "x", Prefix: netip.MustParsePrefix("2001:db9::/32")},
		{Set: "", Direction: 7, Protocol: -3, Port: 65535},
		{Set: "y", Prefix: netip.PrefixFrom(netip.MustParseAddr("::ffff:1.2.3.4"), 128), Direction: Egress, Protocol: UDP, Port: 1},
	} {
		want := fmt.Sprintf("%s %s %s %s/%d", e.Set, e.Prefix, e.Direction, e.Protocol, e.Port)
		if got := e.String(); got != want {
			t.Errorf("String() = %q, want %q", got, want)
		}
	}
}

// TestNoChangeKeepSharesState: a run with nothing to do keeps the sorted
// state it read as it is, and modifying the plan's Keep afterwards by
// appending cannot write into that state.
func TestNoChangeKeepSharesState(t *testing.T) {
	in := scaleInputs(1000)["no-change"]
	p := in.Calculate()
	if p.HasChanges() || len(p.Keep) != 1000 {
		t.Fatalf("no-change run: %d add, %d remove, %d keep", len(p.Add), len(p.Remove), len(p.Keep))
	}
	if &p.Keep[0] != &in.Current.Owned[0] {
		t.Errorf("Keep is a copy of the state read, want the same entries")
	}
	_ = append(p.Keep, Entry{Set: "zzz"})
	if cap(p.Keep) != len(p.Keep) {
		t.Errorf("Keep has spare capacity %d: an append would write into the state", cap(p.Keep)-len(p.Keep))
	}
}

// TestRunsCopyNothing: a sink that writes the result out of an everyday
// plan (one address changed in 100,000) walks it without a merged copy;
// Result makes one (56 bytes an entry).
func TestRunsCopyNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("measures 100k entries")
	}
	const n = 100_000
	for _, run := range []string{"one-change", "one-change-front"} {
		p := scaleInputs(n)[run].Calculate()
		if len(p.Add) != 1 {
			t.Fatalf("%s: the plan adds %d, want 1", run, len(p.Add))
		}
		bytes := func(f func()) int64 {
			return testing.Benchmark(func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					f()
				}
			}).AllocedBytesPerOp()
		}
		if got := bytes(func() { p.Runs() }); got > 1024 {
			t.Errorf("%s: Runs allocates %d bytes, want <= 1024", run, got)
		}
		if got := bytes(func() { p.Result() }); got < 50*n {
			t.Errorf("%s: Result allocates %d bytes; the baseline should copy every entry", run, got)
		}
	}
}
