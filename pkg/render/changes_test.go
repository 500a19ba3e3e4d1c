package render

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"text/tabwriter"

	"github.com/pdsafelist/pdsafelist/pkg/controller"
	"github.com/pdsafelist/pdsafelist/pkg/plan"
)

// tabwriterChanges is how SyncText printed the change lines before
// changeLines: the reference the fast path must match byte for byte.
func tabwriterChanges(add, remove []plan.Entry, unsafe, retired map[plan.Entry]bool) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	for _, e := range add {
		fmt.Fprintf(tw, "  + %s\t%s%s\n", e.Set, e.Prefix, where(e))
	}
	for _, e := range remove {
		why := ""
		switch {
		case unsafe[e]:
			why = "\t(unsafe)"
		case retired[e]:
			why = "\t(retired set)"
		}
		fmt.Fprintf(tw, "  - %s\t%s%s%s\n", e.Set, e.Prefix, where(e), why)
	}
	tw.Flush()
	return b.String()
}

func TestChangeLinesMatchTabwriter(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	sets := []string{"a", "webhooks", "api_eu_long_name", "x\ty", "ünï", "new\nline", "s"}
	entry := func() plan.Entry {
		e := plan.Entry{Set: sets[r.IntN(len(sets))]}
		switch r.IntN(4) {
		case 0: // a bare CIDR
		case 1:
			e.Direction, e.Protocol, e.Port = plan.Egress, plan.UDP, uint16(r.IntN(70000))
		default:
			e.Direction, e.Protocol, e.Port = plan.Ingress, plan.TCP, 443
		}
		switch r.IntN(6) {
		case 0:
			e.Prefix = netip.PrefixFrom(netip.AddrFrom16([16]byte{0x26, 0, byte(r.IntN(256)), byte(r.IntN(256))}), 32+r.IntN(97))
		case 1: // invalid, as a read-back entry may be
		default:
			e.Prefix = netip.PrefixFrom(netip.AddrFrom4([4]byte{44, byte(r.IntN(256)), byte(r.IntN(256)), 0}), 8+r.IntN(25))
		}
		return e
	}
	for round := range 300 {
		plainOnly := round%2 == 0
		var add, remove []plan.Entry
		unsafe, retired := map[plan.Entry]bool{}, map[plan.Entry]bool{}
		for range r.IntN(30) {
			e := entry()
			if plainOnly && strings.ContainsAny(e.Set, "\t\nü") {
				continue
			}
			if r.IntN(2) == 0 {
				add = append(add, e)
				continue
			}
			remove = append(remove, e)
			switch r.IntN(4) {
			case 0:
				unsafe[e] = true
			case 1:
				retired[e] = true
			}
		}
		want := tabwriterChanges(add, remove, unsafe, retired)
		var got bytes.Buffer
		c := changeLines{add: add, remove: remove, unsafe: unsafe, retired: retired}
		c.write(&got)
		if got.String() != want {
			t.Fatalf("round %d: change lines differ from tabwriter's\ngot:\n%s\nwant:\n%s", round, got.String(), want)
		}
	}
}

// BenchmarkSyncText100k prints a plan adding 100,000 entries.
func BenchmarkSyncText(b *testing.B) {
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		add := make([]plan.Entry, n)
		for i := range add {
			v := uint32(44)<<24 + uint32(i)*2
			add[i] = plan.Entry{Set: "big", Direction: plan.Ingress, Protocol: plan.TCP, Port: 443,
				Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), 32)}
		}
		r := controller.Report{DryRun: true, Sinks: []controller.SinkReport{{Plan: plan.SinkPlan{Sink: "nftables:x", Add: add}}}}
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			var out bytes.Buffer
			for b.Loop() {
				out.Reset()
				if err := SyncText(&out, r); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/entry")
		})
	}
}
