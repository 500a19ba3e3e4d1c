package iptables

import (
	"context"
	"net/netip"
	osexec "os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/sink/sinktest"
	"github.com/pdsafelist/pdsafelist/pkg/testutil"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/netns"
)

var (
	client4a = netip.MustParseAddr("193.0.2.10")
	client4b = netip.MustParseAddr("193.0.2.20")
	client6a = netip.MustParseAddr("2001:db9::10")
	client6b = netip.MustParseAddr("2001:db9::20")
)

const probe = 1500 * time.Millisecond

// integration also runs the test in parallel: each has its own namespaces.
func integration(t *testing.T) {
	t.Helper()
	t.Parallel()
	testutil.Integration(t, true, "iptables", "ip6tables", "iptables-restore", "ip6tables-restore", "ipset", "ip")
}

// liveIn returns a live sink whose every command runs in namespace ns.
func liveIn(t testing.TB, ns string, f func(*Options)) *Live {
	t.Helper()
	o := DefaultOptions()
	in := "ip netns exec " + ns + " "
	o.IPTables, o.IP6Tables = in+"iptables", in+"ip6tables"
	o.IPTablesRestore, o.IP6TablesRestore = in+"iptables-restore", in+"ip6tables-restore"
	o.IPSet, o.NetNS = in+"ipset", ns
	if f != nil {
		f(&o)
	}
	s, err := New(o, "", "test")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sh(t testing.TB, p *netns.Pair, argv ...string) string {
	t.Helper()
	out, err := p.Exec(p.Server, argv...)
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(argv, " "), err, out)
	}
	return string(out)
}

var counters = regexp.MustCompile(`\[\d+:\d+\]`)

// save is both families' filter tables without timestamps or counters.
func save(t testing.TB, p *netns.Pair) string {
	t.Helper()
	var b strings.Builder
	for _, cmd := range []string{"iptables-save", "ip6tables-save"} {
		for _, l := range strings.Split(sh(t, p, cmd, "-t", "filter"), "\n") {
			if !strings.HasPrefix(l, "#") {
				b.WriteString(counters.ReplaceAllString(l, "") + "\n")
			}
		}
	}
	return b.String()
}

// outside is save without our chains and our jumps.
func outside(t testing.TB, p *netns.Pair) string {
	t.Helper()
	var keep []string
	for _, l := range strings.Split(save(t, p), "\n") {
		if strings.Contains(l, "PDSAFELIST-") {
			continue
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, "\n")
}

// webhooks allows one address per family on port; ipv4only allows one
// IPv4 address on port2 and nothing over IPv6.
func webhooks(port, port2 uint16) []plan.DesiredSet {
	return []plan.DesiredSet{
		{Name: "webhooks", Direction: plan.Ingress, Protocol: plan.TCP, Ports: []uint16{port},
			Prefixes: []netip.Prefix{netip.PrefixFrom(client4a, 32), netip.PrefixFrom(client6a, 128)}},
		{Name: "ipv4only", Direction: plan.Ingress, Protocol: plan.TCP, Ports: []uint16{port2},
			Prefixes: []netip.Prefix{netip.PrefixFrom(client4a, 32)}},
	}
}

type reach struct {
	src  netip.Addr
	port uint16
	want bool
}

func expectReach(t *testing.T, p *netns.Pair, cases []reach) {
	t.Helper()
	for _, c := range cases {
		dst := netns.Server4
		if c.src.Is6() {
			dst = netns.Server6
		}
		if got := p.Reaches(c.src, dst, c.port, probe); got != c.want {
			t.Errorf("%s -> %s port %d: reached %v, want %v", c.src, dst, c.port, got, c.want)
		}
	}
}

// With enforce, only safelisted sources reach the port, in both families,
// and a set with IPv4 addresses only closes its port to IPv6 too.
func TestLiveEnforceWithRealTraffic(t *testing.T) {
	integration(t)
	p := netns.New(t, client4a, client4b, client6a, client6b)
	p.Serve(t, 8443)
	p.Serve(t, 9443)
	expectReach(t, p, []reach{{client4b, 8443, true}, {client6b, 8443, true}, {client6a, 9443, true}})

	s := liveIn(t, p.Server, func(o *Options) { o.Enforce = "ingress" })
	first := cycle(t, s, webhooks(8443, 9443))
	if len(first.Add) != 3 {
		t.Fatalf("first plan adds %d entries, want 3", len(first.Add))
	}
	expectReach(t, p, []reach{
		{client4a, 8443, true}, {client4b, 8443, false},
		{client6a, 8443, true}, {client6b, 8443, false},
		{client4a, 9443, true}, {client4b, 9443, false},
		{client6a, 9443, false}, // no IPv6 address is safelisted: closed, not open
	})

	// Without enforce nothing is blocked.
	open := liveIn(t, p.Server, nil)
	if err := open.Apply(context.Background(), first); err != nil {
		t.Fatal(err)
	}
	expectReach(t, p, []reach{{client4b, 8443, true}, {client6b, 8443, true}, {client6a, 9443, true}})
}

// The whole life of the chains: rules outside them untouched, a no-op
// re-apply, a shrink, and a hand flush repaired.
func TestLiveLifecycle(t *testing.T) {
	integration(t)
	p := netns.New(t, client4a, client4b, client6a, client6b)
	p.Serve(t, 8443)
	for _, cmd := range []string{"iptables", "ip6tables"} {
		sh(t, p, cmd, "-N", "FOREIGN")
		sh(t, p, cmd, "-A", "FOREIGN", "-p", "tcp", "--dport", "22", "-j", "ACCEPT")
		sh(t, p, cmd, "-A", "INPUT", "-j", "FOREIGN")
		sh(t, p, cmd, "-A", "OUTPUT", "-p", "udp", "--dport", "53", "-j", "ACCEPT")
	}
	before := outside(t, p)
	s := liveIn(t, p.Server, func(o *Options) { o.Enforce = "both" })
	ctx := context.Background()
	d := webhooks(8443, 9443)
	d[0].Prefixes = append(d[0].Prefixes, netip.MustParsePrefix("198.52.100.0/24"), netip.MustParsePrefix("2001:db9:1::/48"))
	d = append(d, plan.DesiredSet{Name: "api", Direction: plan.Egress, Protocol: plan.TCP, Ports: []uint16{443},
		Prefixes: []netip.Prefix{netip.MustParsePrefix("203.1.113.7/32")}})

	st, err := s.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Per family: two chains and two jumps missing.
	if len(st.Owned) != 0 || len(st.Drift) != 8 {
		t.Fatalf("empty namespace: owned %v, drift %q; want none and 8", st.Owned, st.Drift)
	}
	first := cycle(t, s, d)
	if got := outside(t, p); got != before {
		t.Errorf("rules outside our chains changed (-before +after):\n%s", cmp.Diff(before, got))
	}
	for _, cmd := range []string{"iptables", "ip6tables"} {
		for _, hook := range []string{"INPUT", "OUTPUT"} {
			rules := sh(t, p, cmd, "-S", hook)
			if n := strings.Count(rules, "-j PDSAFELIST-"); n != 1 {
				t.Errorf("%s %s has %d jumps to our chains, want 1:\n%s", cmd, hook, n, rules)
			}
			if first := strings.Split(rules, "\n")[1]; !strings.Contains(first, "-j PDSAFELIST-") {
				t.Errorf("%s %s: our jump is not first: %s", cmd, hook, first)
			}
		}
	}
	expectReach(t, p, []reach{{client4a, 8443, true}, {client4b, 8443, false}, {client6a, 8443, true}, {client6b, 8443, false}})

	// Re-reading gives back exactly what was applied, and re-applying it
	// changes nothing in the kernel.
	st, err = s.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(first.Result(), st.Owned, cmpPrefix); diff != "" || len(st.Drift) != 0 {
		t.Fatalf("Current after apply (-want +got):\n%s\ndrift: %q", diff, st.Drift)
	}
	again := sinktest.Plan(t, sink.Step{Sink: s}, d, st)
	if again.HasChanges() {
		t.Fatalf("second plan has changes: %+v", again)
	}
	applied := save(t, p)
	if err := s.Apply(ctx, again); err != nil {
		t.Fatal(err)
	}
	if got := save(t, p); got != applied {
		t.Errorf("re-apply changed the ruleset (-before +after):\n%s", cmp.Diff(applied, got))
	}

	// Shrink: retire 198.52.100.0/24 and 2001:db9:1::/48 only.
	d[0].Prefixes = d[0].Prefixes[:2]
	shrink := cycle(t, s, d)
	var removed []string
	for _, e := range shrink.Remove {
		removed = append(removed, e.Prefix.String())
	}
	if diff := cmp.Diff([]string{"198.52.100.0/24", "2001:db9:1::/48"}, removed); diff != "" || len(shrink.Add) != 0 {
		t.Errorf("shrink removed (-want +got):\n%s\nadded %v", diff, shrink.Add)
	}
	st, err = s.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(shrink.Result(), st.Owned, cmpPrefix); diff != "" {
		t.Errorf("after shrink (-want +got):\n%s", diff)
	}
	if got := outside(t, p); got != before {
		t.Errorf("shrink touched rules outside our chains:\n%s", cmp.Diff(before, got))
	}
	shrunk := save(t, p)

	// Hand flush our chain and delete the jump: the next sync repairs both.
	sh(t, p, "iptables", "-F", "PDSAFELIST-IN")
	sh(t, p, "iptables", "-D", "INPUT", "-m", "comment", "--comment", "pdsafelist:jump", "-j", "PDSAFELIST-IN")
	sh(t, p, "ip6tables", "-D", "PDSAFELIST-IN", "1")
	expectReach(t, p, []reach{{client4b, 8443, true}})
	repair := cycle(t, s, d)
	if len(repair.Add) != 3 || len(repair.Remove) != 0 || len(repair.Drift) == 0 {
		t.Errorf("repair plan: add %v remove %v drift %q; want the 3 flushed entries back and drift", repair.Add, repair.Remove, repair.Drift)
	}
	if got := save(t, p); got != shrunk {
		t.Errorf("repair did not restore the ruleset (-want +got):\n%s", cmp.Diff(shrunk, got))
	}
	expectReach(t, p, []reach{{client4a, 8443, true}, {client4b, 8443, false}, {client6a, 8443, true}})

	// A duplicated jump is drift too, and the repair keeps one.
	sh(t, p, "iptables", "-A", "INPUT", "-m", "comment", "--comment", "pdsafelist:jump", "-j", "PDSAFELIST-IN")
	if dup := cycle(t, s, d); len(dup.Drift) != 1 || !strings.Contains(dup.Drift[0], "2 times") {
		t.Errorf("duplicate jump drift = %q", dup.Drift)
	}
	if got := save(t, p); got != shrunk {
		t.Errorf("duplicate jump not removed (-want +got):\n%s", cmp.Diff(shrunk, got))
	}
}

// A transaction iptables-restore rejects, whether --test catches it (a
// syntax error) or only the commit does (a jump to a missing chain), leaves
// the chains as they were.
func TestLiveRejectedApplyKeepsChains(t *testing.T) {
	integration(t)
	for name, bad := range map[string]string{
		"syntax":        "-A PDSAFELIST-IN --no-such-option\n",
		"missing chain": "-A PDSAFELIST-IN -j NO-SUCH-CHAIN\n",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			p := netns.New(t, client4a)
			s := liveIn(t, p.Server, func(o *Options) { o.Enforce = "ingress" })
			cycle(t, s, webhooks(8443, 9443))
			before := save(t, p)
			real := s.run
			s.run = func(ctx context.Context, argv []string, stdin []byte) ([]byte, error) {
				if strings.Contains(strings.Join(argv, " "), "iptables-restore") {
					stdin = []byte(strings.Replace(string(stdin), "COMMIT\n", bad+"COMMIT\n", 1))
				}
				return real(ctx, argv, stdin)
			}
			d := webhooks(8443, 9443)
			d[0].Prefixes = d[0].Prefixes[1:]
			st, err := s.Current(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			err = s.Apply(context.Background(), sinktest.Plan(t, sink.Step{Sink: s}, d, st))
			if err == nil || !strings.HasPrefix(err.Error(), "iptables: rejected, previous ") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("Apply = %v; want one line saying the chains were kept", err)
			}
			if got := save(t, p); got != before {
				t.Errorf("rejected apply changed the ruleset:\n%s", cmp.Diff(before, got))
			}
		})
	}
}

// A missing binary or privilege is one line naming the sink and command.
func TestLiveMissingBinaryOrPrivilege(t *testing.T) {
	s := liveIn(t, "x", func(o *Options) { o.IPTables = "/nonexistent/iptables" })
	_, err := s.Current(context.Background())
	if err == nil || !strings.HasPrefix(err.Error(), "iptables: /nonexistent/iptables -w 10 -t filter -S: ") || strings.Contains(err.Error(), "\n") {
		t.Errorf("missing binary: %v", err)
	}
	testutil.Integration(t, true, "iptables", "setpriv")
	s = liveIn(t, "x", func(o *Options) {
		o.IPTables = "setpriv --reuid=65534 --regid=65534 --clear-groups iptables"
	})
	_, err = s.Current(context.Background())
	if err == nil || !strings.HasPrefix(err.Error(), "iptables: setpriv") || !strings.Contains(err.Error(), "ermission denied") || strings.Contains(err.Error(), "\n") {
		t.Errorf("missing privilege: %v", err)
	}
}

// bigPrefixes is n distinct /32s at odd addresses in 11.0.0.0/8, so no two
// aggregate.
func bigPrefixes(n int) []netip.Prefix {
	out := make([]netip.Prefix, n)
	for i := range out {
		v := uint32(2*i + 1)
		out[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{11, byte(v >> 16), byte(v >> 8), byte(v)}), 32)
	}
	return out
}

func bigPrefixes6(n int) []netip.Prefix {
	out := make([]netip.Prefix, n)
	for i := range out {
		var b [16]byte
		copy(b[:], netip.MustParseAddr("2001:db9:1::").AsSlice())
		v := uint32(2*i + 1)
		b[13], b[14], b[15] = byte(v>>16), byte(v>>8), byte(v)
		out[i] = netip.PrefixFrom(netip.AddrFrom16(b), 128)
	}
	return out
}

// 10,000 IPv4 and 300 IPv6 prefixes go into ipsets, traffic still flows
// for the safelisted client only, a hand-deleted member comes back, and
// shrinking below the threshold returns to plain rules and destroys the
// sets.
func TestLiveIPSet10k(t *testing.T) {
	integration(t)
	p := netns.New(t, client4a, client4b, client6a, client6b)
	p.Serve(t, 8443)
	s := liveIn(t, p.Server, func(o *Options) { o.Enforce = "ingress" })
	big := append(bigPrefixes(10_000), netip.PrefixFrom(client4a, 32))
	big = append(big, bigPrefixes6(300)...)
	big = append(big, netip.PrefixFrom(client6a, 128))
	d := []plan.DesiredSet{{Name: "webhooks", Direction: plan.Ingress, Protocol: plan.TCP, Ports: []uint16{8443}, Prefixes: big}}
	first := cycle(t, s, d)
	if len(first.Add) != 10_302 {
		t.Fatalf("plan adds %d, want 10302", len(first.Add))
	}
	chain := sh(t, p, "iptables", "-S", "PDSAFELIST-IN")
	if n := strings.Count(chain, "--match-set"); n != 1 || strings.Count(chain, "\n") != 3 {
		t.Errorf("want one ipset rule and one drop, got:\n%s", chain)
	}
	sets := strings.Fields(sh(t, p, "ipset", "list", "-n"))
	if len(sets) != 2 {
		t.Errorf("ipsets = %v; want one per family, no temporaries", sets)
	}
	expectReach(t, p, []reach{{client4a, 8443, true}, {client4b, 8443, false}, {client6a, 8443, true}, {client6b, 8443, false}})

	st, err := s.Current(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(first.Result(), st.Owned, cmpPrefix); diff != "" || len(st.Drift) != 0 {
		t.Fatalf("Current (-want +got):\n%s\ndrift %q", diff, st.Drift)
	}

	// A member deleted by hand is missing, and the next sync puts it back.
	name := ipsetName("PDSAFELIST-IN", plan.Entry{Set: "webhooks", Protocol: plan.TCP, Port: 8443}, 4)
	sh(t, p, "ipset", "del", name, client4a.String())
	expectReach(t, p, []reach{{client4a, 8443, false}})
	repair := cycle(t, s, d)
	if len(repair.Add) != 1 || repair.Add[0].Prefix.Addr() != client4a {
		t.Errorf("repair adds %v; want %s only", repair.Add, client4a)
	}
	expectReach(t, p, []reach{{client4a, 8443, true}})

	// Below the threshold: plain rules again, and no set left behind.
	d[0].Prefixes = []netip.Prefix{netip.PrefixFrom(client4a, 32), netip.PrefixFrom(client6a, 128)}
	if shrink := cycle(t, s, d); len(shrink.Remove) != 10_300 {
		t.Errorf("shrink removes %d, want 10300", len(shrink.Remove))
	}
	if left := strings.TrimSpace(sh(t, p, "ipset", "list", "-n")); left != "" {
		t.Errorf("ipsets left after shrink: %s", left)
	}
	expectReach(t, p, []reach{{client4a, 8443, true}, {client4b, 8443, false}, {client6a, 8443, true}})
}

// The files load with iptables-restore --noflush, are validated with
// --test, and the live sink reads back exactly the entries they hold.
func TestFileLoadsAndReadsBackLive(t *testing.T) {
	integration(t)
	p := netns.New(t, client4a, client4b, client6a)
	p.Serve(t, 8443)
	o := DefaultFileOptions()
	o.Enforce, o.Check = "ingress", "always"
	o.Path = filepath.Join(t.TempDir(), "pdsafelist.rules")
	o.IPTablesRestore = "ip netns exec " + p.Server + " iptables-restore"
	o.IP6TablesRestore = "ip netns exec " + p.Server + " ip6tables-restore"
	f, err := NewFile(o, "", "test")
	if err != nil {
		t.Fatal(err)
	}
	written := cycle(t, f, webhooks(8443, 9443))
	if f.paths[6] != o.Path+".v6" {
		t.Errorf("v6 path = %q", f.paths[6])
	}
	for fam, cmd := range map[family]string{4: "iptables-restore", 6: "ip6tables-restore"} {
		if out, err := osexec.Command("ip", "netns", "exec", p.Server, "sh", "-c", cmd+" --noflush < "+f.paths[fam]).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", cmd, err, out)
		}
	}
	expectReach(t, p, []reach{{client4a, 8443, true}, {client4b, 8443, false}, {client6a, 8443, true}})
	live := liveIn(t, p.Server, func(o *Options) { o.Enforce = "ingress" })
	st, err := live.Current(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(written.Result(), st.Owned, cmpPrefix); diff != "" || len(st.Drift) != 0 {
		t.Errorf("live read of the loaded files (-want +got):\n%s\ndrift %q", diff, st.Drift)
	}
}
