package plan

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"go4.org/netipx"
)

// Holding the 16 odd addresses of 44.243.0.0/27, PagerDuty adds the 16
// even ones: the union aggregates to one /27. Every address stays allowed,
// so nothing is removed in the guard's sense (issue 11 item 5).
func TestMaxDeleteReshapingIsNotRemoval(t *testing.T) {
	var held []Entry
	var all []netip.Prefix
	for i := range 32 {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{44, 243, 0, byte(i)}), 32)
		all = append(all, p)
		if i%2 == 1 {
			held = append(held, Entry{Set: "webhooks", Prefix: p, Direction: Ingress, Protocol: TCP, Port: 443})
		}
	}
	agg, err := Aggregate(all)
	if err != nil {
		t.Fatal(err)
	}
	d := DesiredSet{Name: "webhooks", Direction: Ingress, Protocol: TCP, Ports: []uint16{443}, Prefixes: agg}
	p := Input{Sink: "nft", Desired: []DesiredSet{d}, Current: State{Owned: held}}.Calculate()
	if len(p.Remove) != 16 || len(p.Add) != 1 {
		t.Fatalf("plan: add %v remove %d", p.Add, len(p.Remove))
	}
	for _, flag := range []string{"30%", "0", "1"} {
		m, err := ParseMaxDelete(flag)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Check(p); err != nil {
			t.Errorf("--max-delete %s: reshaping refused: %v", flag, err)
		}
	}
	// The same removals are counted when the result no longer covers them:
	// another port or direction does not count as cover (another set does:
	// TestMaxDeleteRelabelIsNotRemoval).
	for name, other := range map[string]DesiredSet{
		"other port":      {Name: "webhooks", Direction: Ingress, Protocol: TCP, Ports: []uint16{8443}, Prefixes: agg},
		"other direction": {Name: "webhooks", Direction: Egress, Protocol: TCP, Ports: []uint16{443}, Prefixes: agg},
		"narrower":        {Name: "webhooks", Direction: Ingress, Protocol: TCP, Ports: []uint16{443}, Prefixes: agg[:0:0]},
	} {
		p := SinkPlan{Sink: "nft", Remove: held, Add: other.Entries()}
		if name == "narrower" {
			// 44.243.0.0/28 covers the first 8 odd addresses only.
			p.Add = []Entry{{Set: "webhooks", Prefix: netip.MustParsePrefix("44.243.0.0/28"), Direction: Ingress, Protocol: TCP, Port: 443}}
		}
		err := DefaultMaxDelete.Check(p)
		want := "removes 16 of 16 entries"
		if name == "narrower" {
			want = "removes 8 of 16 entries"
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %q", name, err, want)
		}
	}
}

// Cover is the union of the result, not one prefix: two kept halves cover
// an owned prefix that spans both.
func TestMaxDeleteCoverIsUnion(t *testing.T) {
	e := func(s string) Entry { return entry("x", Ingress, s) }
	p := SinkPlan{Sink: "s",
		Keep:   []Entry{e("44.243.1.0/25")},
		Add:    []Entry{e("44.243.1.128/25")},
		Remove: []Entry{e("44.243.1.0/24")},
	}
	if err := (MaxDelete{ByCount: true}).Check(p); err != nil {
		t.Errorf("covered by the union, refused: %v", err)
	}
	p.Add = []Entry{e("44.243.1.128/26")}
	if err := (MaxDelete{ByCount: true}).Check(p); err == nil {
		t.Error("partly uncovered /24 not counted")
	}
}

// Unsafe entries read back under our marker are removed whatever the
// guard says: they are neither counted as removals nor as existing.
func TestMaxDeleteIgnoresUnsafe(t *testing.T) {
	var p SinkPlan
	for i := range 10 {
		p.Keep = append(p.Keep, entry("x", Ingress, fmt.Sprintf("44.243.2.%d/32", i)))
	}
	world := []Entry{entry("x", Ingress, "0.0.0.0/1"), entry("x", Ingress, "128.0.0.0/1")}
	p.Remove = append(p.Remove, world...)
	p.Unsafe = world
	m, _ := ParseMaxDelete("0")
	if err := m.Check(p); err != nil {
		t.Errorf("removing unsafe entries refused: %v", err)
	}
	p.Remove = append(p.Remove, entry("x", Ingress, "44.243.3.1/32"))
	err := m.Check(p)
	if err == nil || !strings.Contains(err.Error(), "removes 1 of 11 entries") {
		t.Errorf("err = %v, want removes 1 of 11 entries", err)
	}
}

// --max-delete N is an absolute count whatever the sink's size; 0 means no
// removals at all. A percentage applies from MinExisting entries.
func TestMaxDeleteCountIgnoresMinExisting(t *testing.T) {
	mk := func(keep, remove int) SinkPlan {
		var p SinkPlan
		for i := range keep {
			p.Keep = append(p.Keep, entry("x", Ingress, fmt.Sprintf("44.243.4.%d/32", 2*i)))
		}
		for i := range remove {
			p.Remove = append(p.Remove, entry("x", Ingress, fmt.Sprintf("44.243.5.%d/32", 2*i)))
		}
		return p
	}
	for _, tt := range []struct {
		flag         string
		keep, remove int
		refused      bool
	}{
		{"0", 1, 2, true}, // the "2 of 3 on a small sink"
		{"0", 0, 1, true},
		{"0", 3, 0, false},
		{"1", 1, 2, true},
		{"2", 1, 2, false},
		{"30%", 1, 2, false}, // below 10 entries a share does not apply
		{"30%", 8, 2, false},
		{"30%", 6, 4, true},
	} {
		m, err := ParseMaxDelete(tt.flag)
		if err != nil {
			t.Fatal(err)
		}
		err = m.Check(mk(tt.keep, tt.remove))
		if (err != nil) != tt.refused {
			t.Errorf("--max-delete %s keep %d remove %d: err = %v, want refused %v", tt.flag, tt.keep, tt.remove, err, tt.refused)
		}
		var ge *GuardError
		if err != nil && (!errors.As(err, &ge) || !strings.Contains(err.Error(), "--max-delete "+tt.flag)) {
			t.Errorf("refusal %q does not name the limit", err)
		}
	}
	if got := fmt.Sprint(mustMaxDelete(t, "0"), mustMaxDelete(t, "5"), mustMaxDelete(t, "30%")); got != "0 5 30%" {
		t.Errorf("String = %q", got)
	}
}

func mustMaxDelete(t *testing.T, s string) MaxDelete {
	t.Helper()
	m, err := ParseMaxDelete(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// 100k owned entries reshaped: the cover check must stay cheap.
func BenchmarkMaxDeleteCheck(b *testing.B) {
	var p SinkPlan
	for i := range 100_000 {
		a := netip.AddrFrom4([4]byte{44, byte(i >> 16), byte(i >> 8), byte(i)})
		e := Entry{Set: "x", Prefix: netip.PrefixFrom(a, 32), Direction: Ingress, Protocol: TCP, Port: 443}
		if i%2 == 0 {
			p.Keep = append(p.Keep, e)
		} else {
			p.Remove = append(p.Remove, e)
		}
		if i%4 == 0 {
			p.Add = append(p.Add, Entry{Set: "x", Prefix: netip.PrefixFrom(a, 30), Direction: Ingress, Protocol: TCP, Port: 443})
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := DefaultMaxDelete.Check(p); err != nil {
			b.Fatal(err)
		}
	}
}

// The everyday removal at scale: one address dropped from 200,000. The
// cover check holds what can cover it, not a range of every entry kept
// (96 bytes an entry: 96 MB at a million, the peak of such a run).
func TestMaxDeleteOneRemovalIndexesLittle(t *testing.T) {
	const n = 200_000
	var p SinkPlan
	for i := range n {
		a := netip.AddrFrom4([4]byte{44, byte(i >> 16), byte(i >> 8), byte(i)})
		p.Keep = append(p.Keep, Entry{Set: "x", Prefix: netip.PrefixFrom(a, 32), Direction: Ingress, Protocol: TCP, Port: 443})
	}
	gone := p.Keep[n/2]
	p.Keep = slices.Delete(p.Keep, n/2, n/2+1)
	p.Remove = []Entry{gone}
	m := mustMaxDelete(t, "0")
	var err error
	allocated := testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			err = m.Check(p)
		}
	}).AllocedBytesPerOp()
	var ge *GuardError
	if !errors.As(err, &ge) || !strings.Contains(err.Error(), "removes 1 of 200000 entries") {
		t.Fatalf("Check = %v; want the one removal refused", err)
	}
	// Covered by a wider prefix added: no removal.
	p.Add = []Entry{{Set: "y", Prefix: netip.PrefixFrom(gone.Prefix.Addr(), 31).Masked(), Direction: Ingress, Protocol: TCP, Port: 443}}
	if err := m.Check(p); err != nil {
		t.Fatalf("Check with the address still covered = %v", err)
	}
	t.Logf("%d bytes", allocated)
	if allocated > 64<<10 {
		t.Errorf("checking one removal among %d entries allocated %d bytes; want at most 64 KB", n, allocated)
	}
}

// The cover check agrees with netipx.IPSet on random, unsorted input with
// several keys and both families, whole and kept to what the probes meet.
func TestCoverageMatchesIPSet(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	randEntry := func() Entry {
		e := Entry{Set: []string{"a", "b"}[rng.IntN(2)], Direction: Ingress, Protocol: TCP, Port: uint16(443 + rng.IntN(2))}
		if rng.IntN(4) == 0 {
			a := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb9, 15: byte(rng.IntN(64))})
			e.Prefix = netip.PrefixFrom(a, 122+rng.IntN(7)).Masked()
		} else {
			a := netip.AddrFrom4([4]byte{44, 243, 0, byte(rng.IntN(64))})
			e.Prefix = netip.PrefixFrom(a, 26+rng.IntN(7)).Masked()
		}
		return e
	}
	for round := range 200 {
		var keep, add, probe []Entry
		for range rng.IntN(20) {
			keep = append(keep, randEntry())
		}
		for range rng.IntN(20) {
			add = append(add, randEntry())
		}
		for range 20 {
			probe = append(probe, randEntry())
		}
		sets := map[Entry]*netipx.IPSetBuilder{}
		for _, e := range append(slices.Clone(keep), add...) {
			k := key(e)
			if sets[k] == nil {
				sets[k] = &netipx.IPSetBuilder{}
			}
			sets[k].AddPrefix(e.Prefix)
		}
		// Whole, and holding only the ranges that meet the probes.
		for _, c := range []*coverage{newCoverage(keep, add, nil), newCoverage(keep, add, probe)} {
			for _, e := range probe {
				want := false
				if b := sets[key(e)]; b != nil {
					s, _ := b.IPSet()
					want = s.ContainsPrefix(e.Prefix)
				}
				if got := c.covers(e); got != want {
					t.Fatalf("round %d: covers(%s) = %v, IPSet says %v\nkeep %v\nadd %v", round, e, got, want, keep, add)
				}
			}
		}
	}
}

// A relabel (the address moves from one set's entry to another's on the
// same port, as EC2 claims hand over) is no deletion: the address stays
// allowed. Dropping it from every set is.
func TestMaxDeleteRelabelIsNotRemoval(t *testing.T) {
	var p SinkPlan
	for i := range 10 {
		p.Remove = append(p.Remove, entry("events", Egress, fmt.Sprintf("44.243.4.%d/32", i)))
		p.Add = append(p.Add, entry("api", Egress, fmt.Sprintf("44.243.4.%d/32", i)))
	}
	m, _ := ParseMaxDelete("0")
	if err := m.Check(p); err != nil {
		t.Errorf("a relabel of 10 entries refused: %v", err)
	}
	p.Add = p.Add[:9]
	if err := m.Check(p); err == nil || !strings.Contains(err.Error(), "removes 1 of 10 entries") {
		t.Errorf("err = %v, want removes 1 of 10 entries", err)
	}
}
