package iptables

import (
	"context"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/sink/sinktest"
	"github.com/pdsafelist/pdsafelist/pkg/testutil"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/netns"
)

// backend names the iptables commands of one backend inside a namespace.
type backend struct{ name, ipt, ip6t, save string }

var backends = []backend{
	{"nf_tables", "iptables", "ip6tables", "iptables-save"},
	{"legacy", "iptables-legacy", "ip6tables-legacy", "iptables-legacy-save"},
}

// liveOn is liveIn on one backend.
func liveOn(t testing.TB, p *netns.Pair, b backend, f func(*Options)) *Live {
	t.Helper()
	return liveIn(t, p.Server, func(o *Options) {
		in := "ip netns exec " + p.Server + " "
		o.IPTables, o.IP6Tables = in+b.ipt, in+b.ip6t
		o.IPTablesRestore, o.IP6TablesRestore = in+b.ipt+"-restore", in+b.ip6t+"-restore"
		if f != nil {
			f(o)
		}
	})
}

// Item 3 of issue 12: a rule inserted at the top of INPUT between our read
// and our write (fail2ban, Docker) shifted the positions pdsafelist had
// read, so deleting a duplicate jump "by number" deleted a foreign rule and
// kept both jumps. Jumps are now deleted by their specification.
func TestLiveDuplicateJumpsDeletedBySpecUnderRace(t *testing.T) {
	integration(t)
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			testutil.Integration(t, true, b.ipt, b.ipt+"-restore", b.ip6t, b.ip6t+"-restore", b.save)
			p := netns.New(t, client4a)
			s := liveOn(t, p, b, nil)
			d := webhooks(8443, 9443)
			cycle(t, s, d)
			// INPUT: [our jump, foreign, our jump].
			sh(t, p, b.ipt, "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT")
			sh(t, p, b.ipt, "-A", "INPUT", "-m", "comment", "--comment", "pdsafelist:jump", "-j", "PDSAFELIST-IN")
			st, err := s.Current(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if !slices.ContainsFunc(st.Drift, func(l string) bool { return strings.Contains(l, "2 times") }) {
				t.Fatalf("duplicate jump not seen: drift %q", st.Drift)
			}
			// Between Apply's read and its first iptables-restore,
			// another tool inserts a rule at the top of INPUT.
			real, raced := s.run, false
			s.run = func(ctx context.Context, argv []string, stdin []byte) ([]byte, error) {
				if !raced && slices.Contains(argv, b.ipt+"-restore") {
					raced = true
					sh(t, p, b.ipt, "-I", "INPUT", "1", "-s", "193.0.2.99/32", "-j", "DROP")
				}
				return real(ctx, argv, stdin)
			}
			if err := s.Apply(context.Background(), sinktest.Plan(t, sink.Step{Sink: s}, d, st)); err != nil {
				t.Fatal(err)
			}
			if !raced {
				t.Fatal("the race was never injected")
			}
			input := strings.Split(strings.TrimSpace(sh(t, p, b.ipt, "-S", "INPUT")), "\n")
			want := []string{
				"-P INPUT ACCEPT",
				`-A INPUT -m comment --comment pdsafelist:jump -j PDSAFELIST-IN`,
				"-A INPUT -s 193.0.2.99/32 -j DROP",
				"-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT",
			}
			for i := range input {
				input[i] = strings.ReplaceAll(input[i], `"`, "")
			}
			if diff := cmp.Diff(want, input); diff != "" {
				t.Errorf("INPUT after the repair (-want +got):\n%s", diff)
			}
			if again := cycle(t, s, d); again.HasChanges() {
				t.Errorf("after the repair: add %v remove %v drift %q", again.Add, again.Remove, again.Drift)
			}
		})
	}
}

// Item 10 of issue 12: drift names the family whose chains differ. An
// IPv4-only set under enforce used to make a flushed IPv4 chain read as
// "IPv6: our chains differ".
func TestLiveDriftNamesTheFamilyThatDiffers(t *testing.T) {
	integration(t)
	ipv4only := []plan.DesiredSet{{Name: "ipv4only", Direction: plan.Ingress, Protocol: plan.TCP, Ports: []uint16{9443},
		Prefixes: []netip.Prefix{netip.PrefixFrom(client4a, 32)}}}
	for _, tt := range []struct {
		name    string
		d       []plan.DesiredSet
		flush   string
		want    string // the family named
		notWant string
	}{
		{"ipv4 only set, IPv4 flushed", ipv4only, "iptables", "IPv4:", "IPv6:"},
		{"both families, IPv4 flushed", webhooks(8443, 9443), "iptables", "IPv4:", "IPv6:"},
		{"both families, IPv6 flushed", webhooks(8443, 9443), "ip6tables", "IPv6:", "IPv4:"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := netns.New(t, client4a)
			s := liveIn(t, p.Server, func(o *Options) { o.Enforce = "ingress" })
			cycle(t, s, tt.d)
			sh(t, p, tt.flush, "-F", "PDSAFELIST-IN")
			st, err := s.Current(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			named := func(tag string) bool {
				return slices.ContainsFunc(st.Drift, func(l string) bool { return strings.HasPrefix(l, tag) })
			}
			if !named(tt.want) || named(tt.notWant) {
				t.Errorf("drift %q; want %s named and %s not", st.Drift, tt.want, tt.notWant)
			}
			if again := cycle(t, s, tt.d); !again.HasChanges() {
				t.Error("the flush was not repaired")
			}
			if st, err := s.Current(context.Background()); err != nil || len(st.Drift) != 0 {
				t.Errorf("after the repair: drift %q, err %v", st.Drift, err)
			}
		})
	}
}

// A port our chains still close although no entry uses it (its accepts
// were deleted by hand in both families) is drift in every family holding
// it, so a sync that no longer wants the port reopens it.
func TestLiveOrphanDropIsDrift(t *testing.T) {
	integration(t)
	p := netns.New(t, client4a, client4b)
	p.Serve(t, 9443)
	s := liveIn(t, p.Server, func(o *Options) { o.Enforce = "ingress" })
	d := webhooks(8443, 9443)
	cycle(t, s, d)
	sh(t, p, "iptables", "-D", "PDSAFELIST-IN", "-s", client4a.String()+"/32", "-p", "tcp", "-m", "tcp", "--dport", "9443",
		"-m", "comment", "--comment", "pdsafelist:ipv4only", "-j", "ACCEPT")
	st, err := s.Current(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"IPv4: PDSAFELIST-IN drops tcp port 9443, which no entry uses; rewrite it",
		"IPv6: PDSAFELIST-IN drops tcp port 9443, which no entry uses; rewrite it",
	}
	if diff := cmp.Diff(want, st.Drift); diff != "" {
		t.Errorf("drift (-want +got):\n%s", diff)
	}
	// The set is gone from the configuration: the port opens again.
	if again := cycle(t, s, d[:1]); !again.HasChanges() {
		t.Fatal("no sync for the orphan drop")
	}
	expectReach(t, p, []reach{{client4b, 9443, true}})
}

// An entry the sink cannot write (an empty protocol used to panic in the
// ipset name) is refused with one line, before any command runs.
func TestApplyRefusesInvalidEntries(t *testing.T) {
	good := plan.Entry{Set: "webhooks", Prefix: netip.MustParsePrefix("193.0.2.10/32"), Direction: plan.Ingress, Protocol: plan.TCP, Port: 443}
	bad := map[string]func(*plan.Entry){
		"empty protocol": func(e *plan.Entry) { e.Protocol = 0 },
		"protocol 9":     func(e *plan.Entry) { e.Protocol = 9 },
		"port 0":         func(e *plan.Entry) { e.Port = 0 },
		"no prefix":      func(e *plan.Entry) { e.Prefix = netip.Prefix{} },
		"/0":             func(e *plan.Entry) { e.Prefix = netip.MustParsePrefix("0.0.0.0/0") },
		"not masked":     func(e *plan.Entry) { e.Prefix = netip.MustParsePrefix("193.0.2.10/24") },
		"direction":      func(e *plan.Entry) { e.Direction = 9 },
		"set name":       func(e *plan.Entry) { e.Set = `a "b"` },
	}
	for name, breakIt := range bad {
		t.Run(name, func(t *testing.T) {
			e := good
			breakIt(&e)
			// Two entries, so with threshold 1 the group goes to ipsetName.
			e2 := e
			e2.Prefix = netip.MustParsePrefix("193.0.2.11/32")
			p := plan.SinkPlan{Add: []plan.Entry{e, e2}}
			o := DefaultOptions()
			o.IPSetThreshold = 1
			live, err := New(o, "", "test")
			if err != nil {
				t.Fatal(err)
			}
			var ran []string
			live.run = func(_ context.Context, argv []string, _ []byte) ([]byte, error) {
				ran = append(ran, strings.Join(argv, " "))
				return []byte("-N PDSAFELIST-IN\n-N PDSAFELIST-OUT\n"), nil
			}
			err = live.Apply(context.Background(), p)
			if err == nil || strings.Contains(err.Error(), "\n") || !strings.HasPrefix(err.Error(), "iptables: ") {
				t.Errorf("live Apply = %v; want one line naming the sink", err)
			}
			for _, c := range ran {
				if !strings.Contains(c, " -S") {
					t.Errorf("ran %q before refusing", c)
				}
			}
			f := newFile(t, FileOptions{})
			if err := f.Apply(context.Background(), p); err == nil || strings.Contains(err.Error(), "\n") {
				t.Errorf("file Apply = %v; want one line", err)
			}
		})
	}
}

// Item 10 for the file sink: emptying the IPv4 file's ingress chain by hand
// names the IPv4 file, not its IPv6 twin, whose drop for an IPv4-only
// set's port is still right.
func TestFileDriftNamesTheFileThatDiffers(t *testing.T) {
	d := []plan.DesiredSet{
		{Name: "ipv4only", Direction: plan.Ingress, Protocol: plan.TCP, Ports: []uint16{9443}, Prefixes: pfx("193.0.2.10/32")},
		{Name: "webhooks", Direction: plan.Ingress, Protocol: plan.TCP, Ports: []uint16{8443}, Prefixes: pfx("193.0.2.10/32", "2001:db9::10/128")},
	}
	for name, sets := range map[string][]plan.DesiredSet{"ipv4 only set": d[:1], "both families": d} {
		t.Run(name, func(t *testing.T) {
			o := DefaultFileOptions()
			o.Enforce = "ingress"
			s := newFile(t, o)
			cycle(t, s, sets)
			var kept []string
			for _, l := range strings.SplitAfter(read(t, s.paths[4]), "\n") {
				if !strings.HasPrefix(l, "-A PDSAFELIST-IN ") {
					kept = append(kept, l)
				}
			}
			if err := os.WriteFile(s.paths[4], []byte(strings.Join(kept, "")), 0o644); err != nil {
				t.Fatal(err)
			}
			st, err := s.Current(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			want := []string{s.paths[4] + " differs from its entries (options changed or hand-edited); rewrite"}
			if diff := cmp.Diff(want, st.Drift); diff != "" {
				t.Errorf("drift (-want +got):\n%s", diff)
			}
		})
	}
}

// A port both files close although no entry uses it is drift in both, so
// a sync without that set reopens it.
func TestFileOrphanDropIsDrift(t *testing.T) {
	o := DefaultFileOptions()
	o.Enforce = "ingress"
	s := newFile(t, o)
	d := []plan.DesiredSet{
		{Name: "webhooks", Direction: plan.Ingress, Protocol: plan.TCP, Ports: []uint16{8443}, Prefixes: pfx("193.0.2.10/32", "2001:db9::10/128")},
		{Name: "ipv4only", Direction: plan.Ingress, Protocol: plan.TCP, Ports: []uint16{9443}, Prefixes: pfx("193.0.2.10/32")},
	}
	cycle(t, s, d)
	v4 := read(t, s.paths[4])
	accept := `-A PDSAFELIST-IN -s 193.0.2.10/32 -p tcp -m tcp --dport 9443 -m comment --comment "pdsafelist:ipv4only" -j ACCEPT` + "\n"
	if !strings.Contains(v4, accept) {
		t.Fatalf("no %q in\n%s", accept, v4)
	}
	if err := os.WriteFile(s.paths[4], []byte(strings.Replace(v4, accept, "", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := s.Current(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		s.paths[4] + " drops tcp port 9443 in PDSAFELIST-IN, which no entry uses; rewrite",
		s.paths[6] + " drops tcp port 9443 in PDSAFELIST-IN, which no entry uses; rewrite",
	}
	if diff := cmp.Diff(want, st.Drift); diff != "" {
		t.Errorf("drift (-want +got):\n%s", diff)
	}
	cycle(t, s, d[:1])
	if strings.Contains(read(t, s.paths[4])+read(t, s.paths[6]), "9443") {
		t.Error("port 9443 still closed after a sync without its set")
	}
}
