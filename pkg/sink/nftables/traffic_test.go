package nftables

import (
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/testutil"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/netns"
)

// The generated file, loaded with nft -f in a namespace, lets a safelisted
// source reach the managed port and drops another one, over IPv4 and IPv6.
func TestEnforceWithRealTraffic(t *testing.T) {
	testutil.Integration(t, true, "ip", "nft")
	var (
		allowed4 = netip.MustParseAddr("193.0.2.10")
		other4   = netip.MustParseAddr("193.0.2.20")
		allowed6 = netip.MustParseAddr("2001:db9::10")
		other6   = netip.MustParseAddr("2001:db9::20")
	)
	p := netns.New(t, allowed4, other4, allowed6, other6)
	const port, unmanaged = 8443, 9000
	p.Serve(t, port)
	p.Serve(t, unmanaged)
	s := newSink(t, Options{Enforce: "ingress", Apply: true, Check: "always", Nft: "ip netns exec " + p.Server + " nft"})
	set := func(addrs ...string) []plan.DesiredSet {
		d := plan.DesiredSet{Name: "webhooks", Direction: plan.Ingress, Protocol: "tcp", Ports: []uint16{port}}
		for _, a := range addrs {
			d.Prefixes = append(d.Prefixes, netip.PrefixFrom(netip.MustParseAddr(a), netip.MustParseAddr(a).BitLen()))
		}
		return []plan.DesiredSet{d}
	}
	expect := func(when string, want map[netip.Addr]bool) {
		t.Helper()
		for src, ok := range want {
			dst := netns.Server4
			if src.Is6() {
				dst = netns.Server6
			}
			if got := p.Reaches(src, dst, port, time.Second); got != ok {
				t.Errorf("%s: %s reaches port %d = %v, want %v", when, src, port, got, ok)
			}
			if !p.Reaches(src, dst, unmanaged, time.Second) {
				t.Errorf("%s: %s blocked on unmanaged port %d", when, src, unmanaged)
			}
		}
	}

	if pl := sync(t, s, set("193.0.2.10", "2001:db9::10")); len(pl.Add) != 2 {
		t.Fatalf("first sync added %d entries, want 2", len(pl.Add))
	}
	expect("after first sync", map[netip.Addr]bool{allowed4: true, other4: false, allowed6: true, other6: false})

	before, err := os.ReadFile(s.opts.Path)
	if err != nil {
		t.Fatal(err)
	}
	if pl := sync(t, s, set("193.0.2.10", "2001:db9::10")); pl.HasChanges() {
		t.Fatalf("second sync has changes: %+v", pl)
	}
	if after, _ := os.ReadFile(s.opts.Path); string(after) != string(before) {
		t.Error("second sync rewrote the file")
	}

	pl := sync(t, s, set("193.0.2.20", "2001:db9::10"))
	if len(pl.Add) != 1 || len(pl.Remove) != 1 || pl.Remove[0].Prefix != netip.MustParsePrefix("193.0.2.10/32") {
		t.Fatalf("swap plan: add %v remove %v", pl.Add, pl.Remove)
	}
	expect("after swap", map[netip.Addr]bool{allowed4: false, other4: true, allowed6: true, other6: false})

	// Someone deletes the table by hand: the next sync sees it and reloads.
	if out, err := p.Exec(p.Server, "nft", "delete", "table", "inet", "pdsafelist"); err != nil {
		t.Fatalf("delete table: %v: %s", err, out)
	}
	if pl := sync(t, s, set("193.0.2.20", "2001:db9::10")); len(pl.Drift) == 0 {
		t.Fatal("a deleted table was not seen as drift")
	}
	expect("after drift repair", map[netip.Addr]bool{allowed4: false, other4: true})
}

// Egress sets filter what the host connects to: loaded in the client
// namespace, the output hook lets only safelisted destinations reach the
// managed port, and a family with no address is closed, not open.
func TestEgressEnforceWithRealTraffic(t *testing.T) {
	testutil.Integration(t, true, "ip", "nft")
	c4, c6 := netip.MustParseAddr("193.0.2.10"), netip.MustParseAddr("2001:db9::10")
	p := netns.New(t, c4, c6)
	p.Serve(t, 8443)
	p.Serve(t, 9443)
	s := newSink(t, Options{Enforce: "egress", Apply: true, Check: "always", Nft: "ip netns exec " + p.Client + " nft"})
	d := []plan.DesiredSet{{Name: "api", Direction: plan.Egress, Protocol: "tcp", Ports: []uint16{8443},
		Prefixes: []netip.Prefix{netip.PrefixFrom(netns.Server4, 32)}}}
	sync(t, s, d)
	for _, c := range []struct {
		src, dst netip.Addr
		port     uint16
		want     bool
	}{
		{c4, netns.Server4, 8443, true},
		{c6, netns.Server6, 8443, false},
		{c6, netns.Server6, 9443, true},
	} {
		if got := p.Reaches(c.src, c.dst, c.port, time.Second); got != c.want {
			t.Errorf("to %s port %d: reached %v, want %v", c.dst, c.port, got, c.want)
		}
	}
}
