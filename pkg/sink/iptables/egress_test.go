package iptables

import (
	"net/netip"
	"testing"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/netns"
)

// Egress sets filter what the host itself connects to: with the chains in
// the client namespace, only safelisted destinations are reachable on the
// managed port, in both families, and other ports stay open.
func TestLiveEgressWithRealTraffic(t *testing.T) {
	integration(t)
	p := netns.New(t, client4a, client6a)
	p.Serve(t, 8443)
	p.Serve(t, 9443)
	api := func(dsts ...netip.Addr) []plan.DesiredSet {
		d := plan.DesiredSet{Name: "api", Direction: plan.Egress, Protocol: "tcp", Ports: []uint16{8443}}
		for _, a := range dsts {
			d.Prefixes = append(d.Prefixes, netip.PrefixFrom(a, a.BitLen()))
		}
		return []plan.DesiredSet{d}
	}
	expect := func(when string, want map[netip.Addr]bool) {
		t.Helper()
		for dst, ok := range want {
			src := client4a
			if dst.Is6() {
				src = client6a
			}
			if got := p.Reaches(src, dst, 8443, probe); got != ok {
				t.Errorf("%s: to %s port 8443 reached %v, want %v", when, dst, got, ok)
			}
			if !p.Reaches(src, dst, 9443, probe) {
				t.Errorf("%s: to %s blocked on unmanaged port 9443", when, dst)
			}
		}
	}

	s := liveIn(t, p.Client, func(o *Options) { o.Enforce = "egress" })
	cycle(t, s, api(netns.Server4))
	// No IPv6 destination is safelisted yet: closed, not open.
	expect("IPv4 only", map[netip.Addr]bool{netns.Server4: true, netns.Server6: false})
	cycle(t, s, api(netns.Server6))
	expect("IPv6 only", map[netip.Addr]bool{netns.Server4: false, netns.Server6: true})
}
