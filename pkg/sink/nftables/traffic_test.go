package nftables

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gnft "github.com/google/nftables"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/sink/sinktest"
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
	s := newSink(t, Options{Enforce: "ingress", Apply: true, Check: "always", Netns: p.Server})
	set := func(addrs ...string) []plan.DesiredSet {
		d := plan.DesiredSet{Name: "webhooks", Direction: plan.Ingress, Protocol: plan.TCP, Ports: []uint16{port}}
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
	s := newSink(t, Options{Enforce: "egress", Apply: true, Check: "always", Netns: p.Client})
	d := []plan.DesiredSet{{Name: "api", Direction: plan.Egress, Protocol: plan.TCP, Ports: []uint16{8443},
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

// A clean load shows no live drift, even where auto-merge joins prefixes
// (193.0.2.10/32 and .11/32 load as 193.0.2.10/31) and with enforce on
// several ports in both directions.
func TestLiveNoDriftAfterLoad(t *testing.T) {
	testutil.Integration(t, true, "ip", "nft")
	p := netns.New(t)
	s := newSink(t, Options{Enforce: "both", Apply: true, Check: "always", Netns: p.Server})
	sync(t, s, desired())
	st, err := s.Current(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Drift) != 0 {
		t.Fatalf("drift right after a load: %q", st.Drift)
	}
}

// With apply=true the loaded table is compared with the file: a hand flush
// of a set or a chain, a deleted element, an added rule, or a load that
// failed after the new file was renamed into place is drift, and the next
// sync reloads the file.
func TestLiveDriftRepaired(t *testing.T) {
	testutil.Integration(t, true, "ip", "nft")
	allowed, other := netip.MustParseAddr("193.0.2.10"), netip.MustParseAddr("193.0.2.20")
	p := netns.New(t, allowed, other)
	const port = 8443
	p.Serve(t, port)
	dir := t.TempDir()
	failOnce := filepath.Join(dir, "fail-once")
	wrapper := filepath.Join(dir, "nft")
	// Fails one load (nft -f, not the nft -c check) while failOnce exists.
	script := "#!/bin/sh\ncase \" $* \" in *\" -c \"*) ;; *\" -f \"*) if [ -e " + failOnce + " ]; then rm -f " + failOnce +
		"; echo 'Error: injected load failure' >&2; exit 1; fi ;; esac\nexec \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	s := newSink(t, Options{Enforce: "ingress", Apply: true, Check: "always", Nft: wrapper + " nft", Netns: p.Server})
	set := func(addrs ...string) []plan.DesiredSet {
		d := plan.DesiredSet{Name: "webhooks", Direction: plan.Ingress, Protocol: plan.TCP, Ports: []uint16{port}}
		for _, a := range addrs {
			d.Prefixes = append(d.Prefixes, netip.MustParsePrefix(a))
		}
		return []plan.DesiredSet{d}
	}
	d := set("193.0.2.10/32", "44.224.0.0/24", "54.244.0.0/24")
	nft := func(args ...string) {
		t.Helper()
		if out, err := p.Exec(p.Server, append([]string{"nft"}, args...)...); err != nil {
			t.Fatalf("nft %v: %v: %s", args, err, out)
		}
	}
	reaches := func(when string, want map[netip.Addr]bool) {
		t.Helper()
		for src, ok := range want {
			if got := p.Reaches(src, netns.Server4, port, time.Second); got != ok {
				t.Errorf("%s: %s reaches port %d = %v, want %v", when, src, port, got, ok)
			}
		}
	}
	drifts := func(when string) {
		t.Helper()
		st, err := s.Current(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Drift) == 0 {
			t.Fatalf("%s: no drift reported", when)
		}
		t.Logf("%s: %q", when, st.Drift)
		pl := sync(t, s, d)
		if len(pl.Drift) == 0 || len(pl.Add)+len(pl.Remove) != 0 {
			t.Fatalf("%s: sync plan: add %v remove %v drift %q; want drift only", when, pl.Add, pl.Remove, pl.Drift)
		}
		if st, err := s.Current(context.Background()); err != nil || len(st.Drift) != 0 {
			t.Fatalf("%s: drift after the repair: %q %v", when, st.Drift, err)
		}
	}
	sync(t, s, d)
	reaches("after first sync", map[netip.Addr]bool{allowed: true, other: false})

	set4 := "webhooks_tcp8443_in_v4"
	nft("flush", "set", "inet", "pdsafelist", set4)
	reaches("after flush set", map[netip.Addr]bool{allowed: false})
	drifts("flush set")
	reaches("after repair of flush set", map[netip.Addr]bool{allowed: true, other: false})

	nft("flush", "chain", "inet", "pdsafelist", "ingress")
	reaches("after flush chain", map[netip.Addr]bool{other: true})
	drifts("flush chain")
	reaches("after repair of flush chain", map[netip.Addr]bool{allowed: true, other: false})

	nft("delete", "element", "inet", "pdsafelist", set4, "{ 44.224.0.0/24 }")
	drifts("one element deleted")
	nft("add", "element", "inet", "pdsafelist", set4, "{ 193.0.2.20 }")
	drifts("one element added")
	nft("add", "rule", "inet", "pdsafelist", "ingress", "tcp", "dport", "9000", "drop")
	drifts("rule added")
	nft("add", "set", "inet", "pdsafelist", "extra", "{ type ipv4_addr; }")
	drifts("set added")

	// The element batch fails once after the new file is in place (the
	// kernel refuses it whole): the kernel keeps the old elements, and the
	// next run must see that and repair.
	failBatch := true
	s.beforeFlush = func(c *gnft.Conn, _ *gnft.Table) {
		if failBatch {
			failBatch = false
			c.DelTable(&gnft.Table{Name: "pdsafelist_absent", Family: gnft.TableFamilyINet})
		}
	}
	d = set("193.0.2.20/32", "44.224.0.0/24", "54.244.0.0/24")
	st, err := s.Current(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(context.Background(), sinktest.Plan(t, sink.Step{Sink: s}, d, st)); err == nil || !strings.Contains(err.Error(), "element batch refused") {
		t.Fatalf("Apply with a failing batch = %v", err)
	}
	reaches("after failed batch", map[netip.Addr]bool{allowed: true, other: false})
	drifts("failed batch")
	reaches("after repair of failed batch", map[netip.Addr]bool{allowed: false, other: true})

	// A new port changes the structure: the file is loaded whole, and that
	// load fails once after the new file is in place.
	if err := os.WriteFile(failOnce, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	d = set("193.0.2.10/32", "44.224.0.0/24", "54.244.0.0/24")
	d[0].Ports = append(d[0].Ports, 9443)
	if st, err = s.Current(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(context.Background(), sinktest.Plan(t, sink.Step{Sink: s}, d, st)); err == nil || !strings.Contains(err.Error(), "injected load failure") {
		t.Fatalf("Apply with a failing load = %v", err)
	}
	reaches("after failed load", map[netip.Addr]bool{allowed: false, other: true})
	drifts("failed load")
	reaches("after repair of failed load", map[netip.Addr]bool{allowed: true, other: false})
}
