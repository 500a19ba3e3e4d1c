package iptables

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/selfmark"
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
		d := plan.DesiredSet{Name: "api", Direction: plan.Egress, Protocol: plan.TCP, Ports: []uint16{8443}}
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

// The self rule sits before the egress drop and lists back the way it was
// written, for each mask form, so a clean apply is no drift in either
// family; a deleted self rule is drift.
func TestLiveSelfMarkNoDrift(t *testing.T) {
	integration(t)
	for _, m := range []selfmark.Mark{selfmark.Default, {Value: 0x70640000, Mask: 0xffff0000}, {Value: 0x64, Mask: 0xffffffff}} {
		t.Run(m.String(), func(t *testing.T) {
			p := netns.New(t)
			s := liveIn(t, p.Client, func(o *Options) { o.Enforce = "egress" })
			s.layout.selfMark = m
			d := []plan.DesiredSet{{Name: "api", Direction: plan.Egress, Protocol: plan.TCP, Ports: []uint16{443},
				Prefixes: []netip.Prefix{netip.MustParsePrefix("44.242.69.192/32"), netip.MustParsePrefix("2001:db9::5/128")}}}
			cycle(t, s, d)
			st, err := s.Current(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(st.Drift) != 0 {
				t.Fatalf("drift right after an apply: %q", st.Drift)
			}
			for _, cmd := range []string{"iptables", "ip6tables"} {
				out, err := p.Exec(p.Client, cmd, "-S", DefaultChainOut)
				if err != nil || !strings.Contains(string(out), "-m mark --mark") {
					t.Fatalf("%s: self rule not loaded: %v\n%s", cmd, err, out)
				}
			}
			// Rule 2 of the IPv6 chain: after the one accept, before the drop.
			if out, err := p.Exec(p.Client, "ip6tables", "-D", DefaultChainOut, "2"); err != nil {
				t.Fatal(err, string(out))
			}
			if out, _ := p.Exec(p.Client, "ip6tables", "-S", DefaultChainOut); strings.Contains(string(out), "-m mark") {
				t.Fatalf("self rule still there:\n%s", out)
			}
			if st, _ := s.Current(context.Background()); len(st.Drift) == 0 {
				t.Error("a deleted self rule is not drift")
			}
		})
	}
}
