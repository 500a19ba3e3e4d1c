package nftables

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/sink/sinktest"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/golden"
)

var cmpPrefix = cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })

func desired() []plan.DesiredSet {
	return []plan.DesiredSet{
		{Name: "api", Direction: plan.Egress, Protocol: plan.TCP, Ports: []uint16{443}, Prefixes: []netip.Prefix{
			netip.MustParsePrefix("198.52.100.0/24"), netip.MustParsePrefix("203.1.113.7/32")}},
		{Name: "webhooks", Direction: plan.Ingress, Protocol: plan.TCP, Ports: []uint16{443, 8443}, Prefixes: []netip.Prefix{
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

// sync runs one plan-and-apply cycle the way the CLI does, without the
// max-delete guard.
func sync(t *testing.T, s *Sink, d []plan.DesiredSet) plan.SinkPlan {
	t.Helper()
	return sinktest.MustSync(t, sink.Step{Sink: s, Force: true}, d)
}

func TestRenderGolden(t *testing.T) {
	for _, enforce := range []string{"none", "ingress", "both"} {
		t.Run(enforce, func(t *testing.T) {
			s := newSink(t, Options{Enforce: enforce})
			p := sinktest.Plan(t, sink.Step{Sink: s}, desired(), plan.State{})
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

func TestRefusesForeignFiles(t *testing.T) {
	dir := t.TempDir()
	ours := newSink(t, Options{})
	rendered := ours.render(sinktest.Plan(t, sink.Step{Sink: ours}, desired(), plan.State{}).Result())
	tests := []struct {
		name, content, want string
	}{
		{"hand-written ruleset", "table inet filter {\n}\n", "not written by pdsafelist"},
		{"other table", header("other") + "table inet other {\n}\n", "configured table is pdsafelist"},
		// A foreign ruleset with our file pasted below it: the marker is
		// there, but not in the header, so nothing proves the file is ours.
		{"marker in the middle", "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n\t}\n}\n" + string(rendered), "not written by pdsafelist"},
		{"marker line alone", "# managed-by: pdsafelist table=inet:pdsafelist\ntable inet pdsafelist {\n}\n", "not written by pdsafelist"},
		// Ours with someone's table appended: rewriting would lose it.
		{"foreign table appended", string(rendered) + "table inet filter {\n\tchain input {\n\t}\n}\n", "outside table inet pdsafelist"},
		{"foreign statement appended", string(rendered) + "flush ruleset\n", "outside table inet pdsafelist"},
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
	err = s.Apply(context.Background(), sinktest.Plan(t, sink.Step{Sink: s}, d, st))
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
	head := header("pdsafelist") + "table inet pdsafelist {\n"
	for name, body := range map[string]string{
		"bad element":  "set api_tcp443_v4 {\nelements = {\nnot-an-ip\n}\n}\nchain egress {\nip daddr @api_tcp443_v4 accept\n}\n}\n",
		"wrong family": "set api_tcp443_v4 {\nelements = {\n2001:db9::1\n}\n}\nchain egress {\nip daddr @api_tcp443_v4 accept\n}\n}\n",
		"bad set name": "set allow {\nelements = {\n193.0.2.1\n}\n}\n}\n",
		"port zero":    "set api_tcp0_v4 {\nelements = {\n193.0.2.1\n}\n}\nchain egress {\nip daddr @api_tcp0_v4 accept\n}\n}\n",
		"range":        "set api_tcp443_out_v4 {\nelements = {\n193.0.2.1-193.0.2.9\n}\n}\n}\n",
		"unclosed":     "set api_tcp443_out_v4 {\nelements = {\n193.0.2.1\n}\n}\n",
		"unbalanced":   "set api_tcp443_out_v4 {\n}}\n}\n",
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

func header(table string) string {
	return headerShebang + "\n" + headerNote + "\n" + marker + " table=inet:" + table + "\n"
}

// One set used in both directions on one port is two nft sets. Under
// upsert-only, a set that changes direction keeps its held ingress entries
// next to the new egress ones; before, both landed in one nft set used by
// one chain, and the held ones were dropped while the plan said 0 to remove.
func TestDirectionKeepsSetsApart(t *testing.T) {
	s := newSink(t, Options{Enforce: "both"})
	in := []plan.DesiredSet{{Name: "webhooks", Direction: plan.Ingress, Protocol: plan.TCP, Ports: []uint16{443},
		Prefixes: []netip.Prefix{netip.MustParsePrefix("193.0.2.10/32"), netip.MustParsePrefix("2001:db9::10/128")}}}
	sync(t, s, in)
	out := slices.Clone(in)
	out[0].Direction = plan.Egress
	st, err := s.Current(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	p := sinktest.Plan(t, sink.Step{Sink: s, Policy: plan.Policies["upsert-only"]}, out, st)
	if len(p.Remove) != 0 || p.Held != 2 || len(p.Add) != 2 {
		t.Fatalf("upsert-only plan: add %d remove %d held %d; want 2, 0, 2", len(p.Add), len(p.Remove), p.Held)
	}
	if err := s.Apply(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(s.opts.Path)
	f, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	want := plan.Sort(append(in[0].Entries(), out[0].Entries()...))
	if diff := cmp.Diff(want, f.Entries, cmpPrefix); diff != "" {
		t.Errorf("entries after a held direction change (-want +got):\n%s\nfile:\n%s", diff, data)
	}
}

// A file written before set names carried the direction is still ours: it
// reads back with its entries, shows as drift, and the next sync rewrites it
// in the current naming without adding or removing anything.
func TestLegacyNamingRewritten(t *testing.T) {
	s := newSink(t, Options{Enforce: "both"})
	legacy, err := os.ReadFile(filepath.Join("testdata", "legacy-naming.nft"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.opts.Path, legacy, 0o644); err != nil {
		t.Fatal(err)
	}
	want := sinktest.Plan(t, sink.Step{Sink: s}, desired(), plan.State{}).Add
	st, err := s.Current(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, st.Owned, cmpPrefix); diff != "" {
		t.Errorf("legacy entries (-want +got):\n%s", diff)
	}
	p := sync(t, s, desired())
	if len(p.Add)+len(p.Remove) != 0 || len(p.Drift) == 0 {
		t.Fatalf("legacy file: add %v remove %v drift %v; want drift only", p.Add, p.Remove, p.Drift)
	}
	data, _ := os.ReadFile(s.opts.Path)
	if string(data) != string(s.render(want)) {
		t.Errorf("legacy file not rewritten in the current naming:\n%s", data)
	}
	if p := sync(t, s, desired()); p.HasChanges() {
		t.Errorf("run after the rewrite has changes: %+v", p)
	}
}
