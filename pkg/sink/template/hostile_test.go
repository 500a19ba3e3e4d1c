package template

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pdsafelist/pdsafelist/pkg/oneline"
	"github.com/pdsafelist/pdsafelist/pkg/plan"
)

// Every format, a user's template included, refuses an owner id, a
// comment or a set name that would end a line, and writes nothing
// (issue 20 item 4; the conformance suite covers the other settings).
func TestHostileStringsRefusedInEveryFormat(t *testing.T) {
	dir := t.TempDir()
	tmpl := filepath.Join(dir, "user.tmpl")
	if err := os.WriteFile(tmpl, []byte("{{range .Sets}}{{.Name}}: {{join \" \" .Prefixes}}\n{{end}}"), 0o644); err != nil {
		t.Fatal(err)
	}
	const bad = "x\nallow all;\n#"
	refused := func(what, key string, err error) {
		t.Helper()
		if err == nil {
			t.Errorf("%s: accepted", what)
		} else if msg := err.Error(); !strings.Contains(msg, key) || oneline.Check(msg) != nil {
			t.Errorf("%s: refusal %q: want one printable line naming %s", what, msg, key)
		}
	}
	for _, o := range []Options{{Format: "nginx"}, {Format: "haproxy"}, {Format: "plain"}, {Format: "json"},
		{Format: "k8s-networkpolicy"}, {Template: tmpl}, {Template: tmpl, Comment: "//"}} {
		name := o.Format + o.Template + o.Comment
		o.Path = filepath.Join(dir, strings.ReplaceAll(name, "/", "_")+".out")
		_, err := New(o, bad, "test")
		refused(name+": owner_id", "owner_id", err)
		if o.Template != "" {
			c := o
			c.Comment = "#" + bad
			_, err := New(c, "", "test")
			refused(name+": comment", "comment", err)
		}
		s, err := New(o, "prod", "test")
		if err != nil {
			t.Fatal(err)
		}
		e := plan.Entry{Set: "webhooks" + bad, Prefix: netip.MustParsePrefix("193.0.2.10/32"), Direction: plan.Ingress, Protocol: plan.TCP, Port: 443}
		refused(name+": set name", "set", s.Apply(context.Background(), plan.SinkPlan{Add: []plan.Entry{e}}))
		if _, err := os.Stat(o.Path); !os.IsNotExist(err) {
			t.Errorf("%s: the file was written: %v", name, err)
		}
	}
}
