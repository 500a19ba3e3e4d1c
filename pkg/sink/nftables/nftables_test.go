package nftables

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/golden"
)

var cmpPrefix = cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })

func desired() []plan.DesiredSet {
	return []plan.DesiredSet{
		{Name: "api", Direction: plan.Egress, Protocol: "tcp", Ports: []uint16{443}, Prefixes: []netip.Prefix{
			netip.MustParsePrefix("198.52.100.0/24"), netip.MustParsePrefix("203.1.113.7/32")}},
		{Name: "webhooks", Direction: plan.Ingress, Protocol: "tcp", Ports: []uint16{443, 8443}, Prefixes: []netip.Prefix{
			netip.MustParsePrefix("193.0.2.10/32"), netip.MustParsePrefix("193.0.2.11/32"), netip.MustParsePrefix("2001:db9::10/128")}},
	}
}

func newSink(t *testing.T, o Options) *Sink {
	t.Helper()
	if o.Path == "" {
		o.Path = filepath.Join(t.TempDir(), "pdsafelist.nft")
	}
	if o.Table == "" {
		o.Table = "pdsafelist"
	}
	if o.Check == "" {
		o.Check = "never"
	}
	s, err := New(o, "test")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// sync runs one plan-and-apply cycle the way the CLI does.
func sync(t *testing.T, s *Sink, d []plan.DesiredSet) plan.SinkPlan {
	t.Helper()
	st, err := s.Current(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	p := plan.Calculate(s.Name(), d, st, nil)
	if p.HasChanges() {
		if err := s.Apply(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func TestRenderGolden(t *testing.T) {
	for _, enforce := range []string{"none", "ingress", "both"} {
		t.Run(enforce, func(t *testing.T) {
			s := newSink(t, Options{Enforce: enforce})
			p := plan.Calculate(s.Name(), desired(), plan.State{}, nil)
			golden.Assert(t, "render-"+enforce+".nft", s.render(p.Result()))
		})
	}
}

func TestRoundTripAndIdempotence(t *testing.T) {
	s := newSink(t, Options{Enforce: "ingress"})
	first := sync(t, s, desired())
	if len(first.Add) != 8 || len(first.Remove) != 0 {
		t.Fatalf("first plan: %d add, %d remove; want 8, 0", len(first.Add), len(first.Remove))
	}
	before, err := os.ReadFile(s.opts.Path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := Parse(before)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(first.Result(), f.Entries, cmpPrefix); diff != "" {
		t.Errorf("parsed entries (-want +got):\n%s", diff)
	}
	second := sync(t, s, desired())
	if second.HasChanges() || second.Unchanged() != 8 {
		t.Fatalf("second plan not empty: %+v", second)
	}
	after, _ := os.ReadFile(s.opts.Path)
	if string(before) != string(after) {
		t.Error("file changed on a no-op run")
	}
}

func TestShrinkRemovesExactlyRetired(t *testing.T) {
	s := newSink(t, Options{})
	sync(t, s, desired())
	d := desired()
	d[1].Prefixes = d[1].Prefixes[1:] // retire 193.0.2.10
	p := sync(t, s, d)
	want := []plan.Entry{
		{Set: "webhooks", Prefix: netip.MustParsePrefix("193.0.2.10/32"), Direction: plan.Ingress, Protocol: "tcp", Port: 443},
		{Set: "webhooks", Prefix: netip.MustParsePrefix("193.0.2.10/32"), Direction: plan.Ingress, Protocol: "tcp", Port: 8443},
	}
	if diff := cmp.Diff(want, p.Remove, cmpPrefix); diff != "" || len(p.Add) != 0 {
		t.Errorf("remove (-want +got):\n%s\nadd: %v", diff, p.Add)
	}
	data, _ := os.ReadFile(s.opts.Path)
	if strings.Contains(string(data), "193.0.2.10/32") || !strings.Contains(string(data), "193.0.2.11/32") {
		t.Errorf("file after shrink:\n%s", data)
	}
}

func TestFrozenSetKeepsFile(t *testing.T) {
	s := newSink(t, Options{})
	sync(t, s, desired())
	d := desired()
	d[1] = plan.DesiredSet{Name: "webhooks", Direction: plan.Ingress, Protocol: "tcp", Ports: []uint16{443, 8443}, Frozen: true}
	if p := sync(t, s, d); p.HasChanges() {
		t.Fatalf("frozen set changed the sink: %+v", p)
	}
}

func TestRefusesForeignFiles(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, content, want string
	}{
		{"hand-written ruleset", "table inet filter {\n}\n", "not written by pdsafelist"},
		{"other table", "# managed-by: pdsafelist table=inet:other\ntable inet other {\n}\n", "configured table is pdsafelist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.name+".nft")
			if err := os.WriteFile(path, []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			s := newSink(t, Options{Path: path})
			_, err := s.Current(context.Background())
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("Current = %v; want one line with %q", err, tt.want)
			}
			if data, _ := os.ReadFile(path); string(data) != tt.content {
				t.Error("foreign file was modified")
			}
		})
	}
}

func TestHandEditIsDrift(t *testing.T) {
	s := newSink(t, Options{})
	sync(t, s, desired())
	data, _ := os.ReadFile(s.opts.Path)
	edited := strings.Replace(string(data), "\t\tflags interval\n", "\t\tflags interval\n\t\t# note\n\t\tcounter\n", 1)
	if err := os.WriteFile(s.opts.Path, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	p := sync(t, s, desired())
	if len(p.Drift) != 1 || len(p.Add)+len(p.Remove) != 0 {
		t.Fatalf("want drift only, got %+v", p)
	}
	repaired, _ := os.ReadFile(s.opts.Path)
	if string(repaired) != string(data) {
		t.Error("apply did not restore the file")
	}
}

// A file nft rejects never replaces the good one.
func TestFailedCheckKeepsOldFile(t *testing.T) {
	s := newSink(t, Options{Check: "always"})
	s.run = func(context.Context, []string, []byte) ([]byte, error) { return nil, nil }
	sync(t, s, desired())
	old, _ := os.ReadFile(s.opts.Path)
	s.run = func(_ context.Context, argv []string, _ []byte) ([]byte, error) {
		return []byte("Error: syntax error, unexpected junk\nline 2\n"), errors.New("exit status 1")
	}
	d := desired()
	d[0].Prefixes = d[0].Prefixes[:1]
	st, err := s.Current(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	err = s.Apply(context.Background(), plan.Calculate(s.Name(), d, st, nil))
	if err == nil || !strings.Contains(err.Error(), "old file kept: Error: syntax error") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Apply = %v", err)
	}
	if now, _ := os.ReadFile(s.opts.Path); string(now) != string(old) {
		t.Error("old file replaced despite failed check")
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(s.opts.Path), "*"))
	if len(left) != 1 {
		t.Errorf("temporary files left behind: %v", left)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	for _, o := range []Options{
		{Path: "", Table: "t"},
		{Path: "x", Table: "bad table"},
		{Path: "x", Table: "t", Enforce: "all"},
		{Path: "x", Table: "t", Check: "sometimes"},
	} {
		if _, err := New(o, "test"); err == nil {
			t.Errorf("New(%+v) accepted", o)
		}
	}
}

func TestParseRejectsGarbage(t *testing.T) {
	head := "# managed-by: pdsafelist table=inet:pdsafelist\ntable inet pdsafelist {\n"
	for name, body := range map[string]string{
		"bad element":  "set api_tcp443_v4 {\nelements = {\nnot-an-ip\n}\n}\nchain egress {\nip daddr @api_tcp443_v4 accept\n}\n}\n",
		"wrong family": "set api_tcp443_v4 {\nelements = {\n2001:db9::1\n}\n}\nchain egress {\nip daddr @api_tcp443_v4 accept\n}\n}\n",
		"bad set name": "set allow {\nelements = {\n193.0.2.1\n}\n}\n}\n",
		"port zero":    "set api_tcp0_v4 {\nelements = {\n193.0.2.1\n}\n}\nchain egress {\nip daddr @api_tcp0_v4 accept\n}\n}\n",
	} {
		if _, err := Parse([]byte(head + body)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	f, err := Parse([]byte(head + "}\n"))
	if err != nil || len(f.Entries) != 0 {
		t.Errorf("empty table: %v %v", f, err)
	}
}
