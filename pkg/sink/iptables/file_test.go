package iptables

import (
	"context"
	"errors"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/selfmark"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/sink/sinktest"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/golden"
)

var cmpPrefix = cmpopts.EquateComparable(netip.Prefix{}, netip.Addr{})

func pfx(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// desired has an egress set with IPv4 only, so enforce must still close
// its port to IPv6, and an ingress set on two ports in both families.
func desired() []plan.DesiredSet {
	return []plan.DesiredSet{
		{Name: "api", Direction: plan.Egress, Protocol: plan.TCP, Ports: []uint16{443},
			Prefixes: pfx("198.52.100.0/24", "203.1.113.7/32")},
		{Name: "webhooks", Direction: plan.Ingress, Protocol: plan.TCP, Ports: []uint16{443, 8443},
			Prefixes: pfx("193.0.2.10/32", "193.0.2.11/32", "2001:db9::10/128")},
	}
}

func newFile(t *testing.T, o FileOptions) *File {
	t.Helper()
	d := DefaultFileOptions()
	if o.Check != "always" {
		// Never --test against the host's own firewall.
		o.Check = "never"
	}
	if o.Path == "" {
		o.Path = filepath.Join(t.TempDir(), "rules.v4")
	}
	if o.ChainIn == "" {
		o.Chains = d.Chains
	}
	s, err := NewFile(o, "", "test")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// cycle runs one read, plan and apply the way the CLI does, without the
// max-delete guard.
func cycle(t *testing.T, s sink.Sink, d []plan.DesiredSet) plan.SinkPlan {
	t.Helper()
	return sinktest.MustSync(t, sink.Step{Sink: s, Force: true}, d)
}

func read(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestFileRenderGolden(t *testing.T) {
	for _, tt := range []struct {
		name    string
		enforce string
		jump    bool
		mark    selfmark.Mark
	}{{"none", "none", true, selfmark.Default}, {"both", "both", true, selfmark.Mark{}}, {"ingress-nojump", "ingress", false, selfmark.Default},
		{"both-selfmark", "both", true, selfmark.Default}} {
		t.Run(tt.name, func(t *testing.T) {
			o := DefaultFileOptions()
			o.Enforce, o.Jump = tt.enforce, tt.jump
			o.Path = filepath.Join(t.TempDir(), "rules.v4")
			s := newFile(t, o)
			s.layout.selfMark = tt.mark
			p := sinktest.Plan(t, sink.Step{Sink: s}, desired(), plan.State{})
			golden.Assert(t, "file-"+tt.name+".v4", s.render(4, p.Result()))
			golden.Assert(t, "file-"+tt.name+".v6", s.render(6, p.Result()))
		})
	}
}

// The live sink's transaction in ipset mode: one rule per group that
// crosses the threshold, and the sets it matches.
func TestLiveRenderIPSetGolden(t *testing.T) {
	o := DefaultOptions()
	o.Enforce, o.IPSetThreshold = "both", 1
	s, err := New(o, "prod", "test")
	if err != nil {
		t.Fatal(err)
	}
	p := sinktest.Plan(t, sink.Step{Sink: s}, desired(), plan.State{})
	for _, fam := range families {
		rules, sets := s.layout.chainRules(fam, p.Result())
		var b strings.Builder
		b.Write(s.layout.restore("", rules, []string{s.layout.insertJump("INPUT", DefaultChainIn)}))
		for _, name := range sortedKeys(sets) {
			b.WriteString("# ipset " + name + ":")
			for _, p := range sets[name] {
				b.WriteString(" " + p.String())
			}
			b.WriteString("\n")
		}
		golden.Assert(t, "live-ipset.v"+string(rune('0'+fam)), []byte(b.String()))
	}
}

func sortedKeys(m map[string][]netip.Prefix) []string {
	return slices.Sorted(maps.Keys(m))
}

func TestFileRoundTripAndIdempotence(t *testing.T) {
	o := DefaultFileOptions()
	o.Enforce = "both"
	s := newFile(t, o)
	first := cycle(t, s, desired())
	if len(first.Add) != 8 || len(first.Remove) != 0 {
		t.Fatalf("first plan: %d add, %d remove; want 8, 0", len(first.Add), len(first.Remove))
	}
	if s.paths[6] != strings.TrimSuffix(s.paths[4], "v4")+"v6" {
		t.Errorf("v6 path %q does not pair with %q", s.paths[6], s.paths[4])
	}
	v4, v6 := read(t, s.paths[4]), read(t, s.paths[6])
	st, err := s.Current(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(first.Result(), st.Owned, cmpPrefix); diff != "" || len(st.Drift) != 0 {
		t.Errorf("parsed entries (-want +got):\n%s\ndrift: %v", diff, st.Drift)
	}
	second := cycle(t, s, desired())
	if second.HasChanges() || second.Unchanged() != 8 {
		t.Fatalf("second plan not empty: %+v", second)
	}
	if read(t, s.paths[4]) != v4 || read(t, s.paths[6]) != v6 {
		t.Error("files changed on a no-op run")
	}
}

func TestFileHandEditAndMissingTwinAreDrift(t *testing.T) {
	s := newFile(t, FileOptions{})
	cycle(t, s, desired())
	v4, v6 := read(t, s.paths[4]), read(t, s.paths[6])
	edited := strings.Replace(v4, "COMMIT\n", "-A PDSAFELIST-IN -s 193.0.2.99/32 -j ACCEPT\nCOMMIT\n", 1)
	if err := os.WriteFile(s.paths[4], []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(s.paths[6]); err != nil {
		t.Fatal(err)
	}
	p := cycle(t, s, desired())
	if len(p.Drift) != 2 || len(p.Remove) != 0 {
		t.Fatalf("want two drifts and no removal, got %+v", p)
	}
	if len(p.Add) != 2 { // the IPv6 entries, gone with their file
		t.Errorf("add = %v; want the two IPv6 entries", p.Add)
	}
	if read(t, s.paths[4]) != v4 || read(t, s.paths[6]) != v6 {
		t.Error("apply did not restore both files")
	}
}

func TestFileRefusesForeignFiles(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, content, want string
	}{
		{"hand-written ruleset", "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\nCOMMIT\n", "not written by pdsafelist"},
		{"other chains", "# managed-by: pdsafelist family=ipv4 chains=A,B\n*filter\nCOMMIT\n", "refusing to overwrite"},
		{"other family", "# managed-by: pdsafelist family=ipv6 chains=PDSAFELIST-IN,PDSAFELIST-OUT\n*filter\nCOMMIT\n", "refusing to overwrite"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.name+".v4")
			if err := os.WriteFile(path, []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			s := newFile(t, FileOptions{Path: path})
			_, err := s.Current(context.Background())
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "iptables-file:") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("Current = %v; want one line naming the sink with %q", err, tt.want)
			}
			if read(t, path) != tt.content {
				t.Error("foreign file was modified")
			}
		})
	}
}

// A file iptables-restore --test rejects never replaces the good one.
func TestFileFailedCheckKeepsOldFiles(t *testing.T) {
	s := newFile(t, FileOptions{Check: "always"})
	var calls [][]string
	s.run = func(_ context.Context, argv []string, _ []byte) ([]byte, error) {
		calls = append(calls, argv)
		return nil, nil
	}
	cycle(t, s, desired())
	if len(calls) != 2 || calls[0][0] != "iptables-restore" || calls[1][0] != "ip6tables-restore" || calls[0][1] != "--test" {
		t.Fatalf("check calls = %v", calls)
	}
	old := read(t, s.paths[4])
	s.run = func(_ context.Context, argv []string, _ []byte) ([]byte, error) {
		// procrun's one-line error: the command, then its first stderr line.
		return nil, errors.New(strings.Join(argv, " ") + ": iptables-restore v1.8.9 (nf_tables): Chain 'X' does not exist")
	}
	d := desired()
	d[1].Prefixes = d[1].Prefixes[:1]
	st, err := s.Current(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	err = s.Apply(context.Background(), sinktest.Plan(t, sink.Step{Sink: s}, d, st))
	if err == nil || !strings.Contains(err.Error(), "old file kept") || !strings.Contains(err.Error(), "does not exist") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Apply = %v", err)
	}
	if read(t, s.paths[4]) != old {
		t.Error("old file replaced despite failed check")
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(s.paths[4]), "*"))
	if len(left) != 2 {
		t.Errorf("temporary files left behind: %v", left)
	}
}

func TestBadOptionsRejected(t *testing.T) {
	base := DefaultOptions()
	mod := func(f func(*Options)) Options { o := base; f(&o); return o }
	for name, o := range map[string]Options{
		"chain with space": mod(func(o *Options) { o.ChainIn = "MY CHAIN" }),
		"builtin chain":    mod(func(o *Options) { o.ChainOut = "OUTPUT" }),
		"long chain":       mod(func(o *Options) { o.ChainIn = strings.Repeat("A", 29) }),
		"same chains":      mod(func(o *Options) { o.ChainOut = o.ChainIn }),
		"enforce":          mod(func(o *Options) { o.Enforce = "all" }),
		"wait":             mod(func(o *Options) { o.Wait = -1 }),
	} {
		_, err := New(o, "", "--sink iptables")
		if err == nil || strings.Contains(err.Error(), "\n") || !strings.HasPrefix(err.Error(), "--sink iptables: ") {
			t.Errorf("%s: New = %v; want a one-line error naming the sink", name, err)
		}
	}
	if _, err := New(base, "bad owner", "x"); err == nil {
		t.Error("owner id with a space accepted")
	}
	fo := DefaultFileOptions()
	for name, f := range map[string]func(*FileOptions){
		"no path":    func(o *FileOptions) { o.Path = "" },
		"same paths": func(o *FileOptions) { o.Path, o.Path6 = "a", "a" },
		"check":      func(o *FileOptions) { o.Path, o.Check = "a", "sometimes" },
	} {
		o := fo
		f(&o)
		if _, err := NewFile(o, "", "x"); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// Options come through the registry strictly: a typo is an error.
func TestFactoriesDecodeStrictly(t *testing.T) {
	r := sink.Registry{"iptables": Factory, "iptables-file": FileFactory}
	for _, tt := range []struct{ flag, want string }{
		{"iptables?enforce=both&chain_in=IN&chain_out=OUT&ipset_threshold=-1&jump=false", "iptables:IN,OUT"},
		{"iptables", "iptables"},
		{"iptables-file:/tmp/x.rules?enforce=ingress", "iptables-file:/tmp/x.rules"},
	} {
		spec, err := r.ParseFlag(tt.flag)
		if err != nil {
			t.Fatal(err)
		}
		s, err := r.Open(spec, sink.Env{})
		if err != nil {
			t.Fatalf("%s: %v", tt.flag, err)
		}
		if s.Name() != tt.want {
			t.Errorf("%s: name %q, want %q", tt.flag, s.Name(), tt.want)
		}
	}
	spec, _ := r.ParseFlag("iptables?enforce=both&jump=false&ipset_threshold=-1")
	s, _ := r.Open(spec, sink.Env{})
	if l := s.(*Live).layout; l.jump || l.threshold != -1 || l.enforce != "both" {
		t.Errorf("options not applied: %+v", l)
	}
	for _, bad := range []string{"iptables?enforec=both", "iptables?path=/x", "iptables-file:/x?ipset_threshold=3", "iptables?enforce=all", "iptables:/x"} {
		spec, err := r.ParseFlag(bad)
		if err == nil {
			_, err = r.Open(spec, sink.Env{})
		}
		if err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: err = %v; want one line", bad, err)
		}
	}
}

func TestParseRule(t *testing.T) {
	tests := []struct {
		line string
		want rule
	}{
		{`-A PDSAFELIST-IN -s 193.0.2.10/32 -p tcp -m tcp --dport 443 -m comment --comment "pdsafelist:webhooks" -j ACCEPT`,
			rule{chain: "PDSAFELIST-IN", addrOpt: "-s", prefix: netip.MustParsePrefix("193.0.2.10/32"), proto: "tcp", port: 443, comment: "pdsafelist:webhooks", target: "ACCEPT"}},
		{`-A PDSAFELIST-OUT -p udp -m set --match-set pdabc-api-u53-6 dst -m udp --dport 53 -m comment --comment pdsafelist:api -j ACCEPT`,
			rule{chain: "PDSAFELIST-OUT", proto: "udp", port: 53, ipset: "pdabc-api-u53-6", setDir: "dst", comment: "pdsafelist:api", target: "ACCEPT"}},
		{`-I INPUT 1 -m comment --comment "pdsafelist:jump" -j PDSAFELIST-IN`,
			rule{chain: "INPUT", comment: "pdsafelist:jump", target: "PDSAFELIST-IN"}},
		{`-A PDSAFELIST-IN -i eth0 -j ACCEPT`, rule{chain: "PDSAFELIST-IN", raw: `-A PDSAFELIST-IN -i eth0 -j ACCEPT`}},
		{`-A PDSAFELIST-IN -s 193.0.2.10/32 -m comment --comment "a \"quoted\" note" -j DROP`,
			rule{chain: "PDSAFELIST-IN", addrOpt: "-s", prefix: netip.MustParsePrefix("193.0.2.10/32"), comment: `a "quoted" note`, target: "DROP"}},
		{`-A PDSAFELIST-OUT -m mark --mark 0x64/0xff -m comment --comment "pdsafelist:self" -j ACCEPT`,
			rule{chain: "PDSAFELIST-OUT", mark: "0x64/0xff", comment: "pdsafelist:self", target: "ACCEPT"}},
		{`-A PDSAFELIST-OUT -m mark --mark -j ACCEPT`, rule{chain: "PDSAFELIST-OUT", raw: `-A PDSAFELIST-OUT -m mark --mark -j ACCEPT`}},
	}
	for _, tt := range tests {
		got, err := parseRule(tt.line)
		if err != nil {
			t.Fatalf("%s: %v", tt.line, err)
		}
		if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(rule{}), cmpPrefix); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.line, diff)
		}
	}
	if _, err := parseRule(`-A X --comment "open`); err == nil {
		t.Error("unbalanced quote accepted")
	}
}

// Rules that look almost like ours, or another owner's, are never read as
// entries, and they make the chain show as drift.
func TestForeignRulesInChainAreDrift(t *testing.T) {
	o := DefaultOptions()
	o.Enforce = "ingress"
	s, err := New(o, "prod", "test")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join([]string{
		"-P INPUT ACCEPT",
		"-N PDSAFELIST-IN",
		"-N PDSAFELIST-OUT",
		`-A INPUT -m comment --comment "pdsafelist:prod:jump" -j PDSAFELIST-IN`,
		`-A OUTPUT -m comment --comment "pdsafelist:prod:jump" -j PDSAFELIST-OUT`,
		`-A INPUT -j PDSAFELIST-IN`,
		`-A PDSAFELIST-IN -s 193.0.2.10/32 -p tcp -m tcp --dport 443 -m comment --comment "pdsafelist:prod:webhooks" -j ACCEPT`,
		`-A PDSAFELIST-IN -s 193.0.2.11/32 -p tcp -m tcp --dport 443 -m comment --comment "pdsafelist:staging:webhooks" -j ACCEPT`,
		`-A PDSAFELIST-IN -s 193.0.2.12/32 -i eth0 -p tcp -m tcp --dport 443 -m comment --comment "pdsafelist:prod:webhooks" -j ACCEPT`,
		`-A PDSAFELIST-IN -p tcp -m tcp --dport 443 -m comment --comment "pdsafelist:prod:enforce" -j DROP`,
	}, "\n")
	s.run = func(_ context.Context, argv []string, _ []byte) ([]byte, error) {
		if argv[0] == "iptables" {
			return []byte(text), nil
		}
		return []byte("-N PDSAFELIST-IN\n-N PDSAFELIST-OUT\n"), nil
	}
	st, err := s.Current(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []plan.Entry{{Set: "webhooks", Prefix: netip.MustParsePrefix("193.0.2.10/32"), Direction: plan.Ingress, Protocol: plan.TCP, Port: 443}}
	if diff := cmp.Diff(want, st.Owned, cmpPrefix); diff != "" {
		t.Errorf("owned (-want +got):\n%s", diff)
	}
	wantDrift := []string{
		"IPv4: 2 rules in our chains were not written by pdsafelist; remove them",
		"IPv6: our chains differ from their entries (hand edit or changed options); rewrite them",
		"IPv6: INPUT has no jump to PDSAFELIST-IN; insert it",
		"IPv6: OUTPUT has no jump to PDSAFELIST-OUT; insert it",
	}
	if diff := cmp.Diff(wantDrift, st.Drift); diff != "" {
		t.Errorf("drift (-want +got):\n%s", diff)
	}
}

func TestIPSetNames(t *testing.T) {
	key := plan.Entry{Set: "webhooks", Protocol: plan.TCP, Port: 443}
	a, b := ipsetName("PDSAFELIST-IN", key, 4), ipsetName("OTHER-IN", key, 4)
	if a == b || a != ipsetName("PDSAFELIST-IN", key, 4) || a == ipsetName("PDSAFELIST-IN", key, 6) {
		t.Errorf("names not distinct and deterministic: %s %s", a, b)
	}
	long := plan.Entry{Set: strings.Repeat("x", 31), Protocol: plan.UDP, Port: 65535}
	if n := ipsetName("PDSAFELIST-OUT", long, 6); len(tempSetName(n)) > 31 {
		t.Errorf("temporary name %q is longer than ipset's 31", tempSetName(n))
	}
}

// Our jumps are kept to one, and all go once jump is turned off; a jump
// someone else placed is never touched.
func TestJumpRepairTransaction(t *testing.T) {
	const delIn = `-D INPUT -m comment --comment "pdsafelist:jump" -j PDSAFELIST-IN`
	ruleset := strings.Join([]string{
		"-P INPUT ACCEPT",
		"-N PDSAFELIST-IN",
		"-N PDSAFELIST-OUT",
		`-A INPUT -m comment --comment "pdsafelist:jump" -j PDSAFELIST-IN`,
		`-A INPUT -i lo -j ACCEPT`,
		`-A INPUT -j PDSAFELIST-IN`,
		`-A INPUT -m comment --comment "pdsafelist:jump" -j PDSAFELIST-IN`,
		`-A OUTPUT -m comment --comment "pdsafelist:jump" -j PDSAFELIST-OUT`,
	}, "\n")
	for _, tt := range []struct {
		jump bool
		want []string
	}{
		// By specification, never by number: both of ours go and one
		// comes back at the top.
		{true, []string{delIn, delIn, `-I INPUT 1 -m comment --comment "pdsafelist:jump" -j PDSAFELIST-IN`}},
		{false, []string{delIn, delIn, `-D OUTPUT -m comment --comment "pdsafelist:jump" -j PDSAFELIST-OUT`}},
	} {
		o := DefaultOptions()
		o.Jump = tt.jump
		s, err := New(o, "", "test")
		if err != nil {
			t.Fatal(err)
		}
		var restored []string
		s.run = func(_ context.Context, argv []string, stdin []byte) ([]byte, error) {
			switch argv[0] {
			case "iptables":
				return []byte(ruleset), nil
			case "ip6tables":
				return []byte("-N PDSAFELIST-IN\n-N PDSAFELIST-OUT\n"), nil
			case "iptables-restore":
				if !slices.Contains(argv, "--test") {
					for _, l := range strings.Split(string(stdin), "\n") {
						if strings.HasPrefix(l, "-D ") || strings.HasPrefix(l, "-I ") {
							restored = append(restored, l)
						}
					}
				}
			}
			return nil, nil
		}
		st, err := s.Current(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Drift) == 0 {
			t.Errorf("jump=%v: no drift for %v", tt.jump, st)
		}
		if err := s.Apply(context.Background(), plan.SinkPlan{}); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tt.want, restored); diff != "" {
			t.Errorf("jump=%v: IPv4 jump lines (-want +got):\n%s", tt.jump, diff)
		}
	}
}
