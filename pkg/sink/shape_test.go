package sink_test

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
)

func TestBareCIDRsKeepsOneFamily(t *testing.T) {
	p := netip.MustParsePrefix
	desired := []plan.DesiredSet{
		{Name: "hooks", Direction: plan.Ingress, Protocol: plan.TCP, Ports: []uint16{443, 80},
			Prefixes: []netip.Prefix{p("44.1.1.0/24"), p("2001:db9::/48")}},
		{Name: "api", Frozen: true, Reason: "down", LastKnown: []netip.Prefix{p("54.1.1.1/32"), p("2001:db9:1::/48")}},
	}
	got, leftOut := sink.BareCIDRs(desired, false)
	want := []plan.DesiredSet{
		{Name: "hooks", Ports: []uint16{0}, Prefixes: []netip.Prefix{p("44.1.1.0/24")}},
		{Name: "api", Ports: []uint16{0}, Frozen: true, Reason: "down", LastKnown: []netip.Prefix{p("54.1.1.1/32")}},
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateComparable(netip.Prefix{}), cmpopts.EquateEmpty()); diff != "" || leftOut != 1 {
		t.Errorf("IPv4 (-want +got), left out %d (want 1):\n%s", leftOut, diff)
	}
	got, leftOut = sink.BareCIDRs(desired, true)
	if len(got[0].Prefixes) != 1 || got[0].Prefixes[0] != p("2001:db9::/48") || got[1].LastKnown[0] != p("2001:db9:1::/48") || leftOut != 1 {
		t.Errorf("IPv6: %+v, left out %d", got, leftOut)
	}
}
