package sink

import (
	"net/netip"
	"strings"
	"testing"
	"unicode"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
)

type Inner struct {
	Region string            `yaml:"region"`
	Tags   map[string]string `yaml:"tags"`
}

type options struct {
	Path  string   `yaml:"path"`
	Names []string `yaml:"names"`
	Count int      `yaml:"count"`
	Inner `yaml:",inline"`
	Sub   Inner  `yaml:"sub"`
	Skip  string `yaml:"-"`
	Plain string
	other string
}

// Every string an options struct holds is checked and named by its key,
// wherever it sits.
func TestCheckOptions(t *testing.T) {
	const bad = "x\nallow all;"
	ok := options{Path: "/etc/a b", Names: []string{"a"}, Inner: Inner{Tags: map[string]string{"k": "v é"}}, Skip: bad, other: bad}
	if err := CheckOptions("--sink t", ok); err != nil {
		t.Fatalf("clean options refused: %v", err)
	}
	for key, set := range map[string]func(o *options){
		"path":       func(o *options) { o.Path = bad },
		"names[1]":   func(o *options) { o.Names = []string{"a", bad} },
		"region":     func(o *options) { o.Region = bad },
		"tags key":   func(o *options) { o.Tags = map[string]string{bad: "v"} },
		"tags.team":  func(o *options) { o.Tags = map[string]string{"team": bad} },
		"sub.region": func(o *options) { o.Sub.Region = bad },
		"sub.tags.k": func(o *options) { o.Sub.Tags = map[string]string{"k": bad} },
		"plain":      func(o *options) { o.Plain = bad },
	} {
		o := ok
		set(&o)
		for _, v := range []any{o, &o} {
			err := CheckOptions("--sink t", v)
			if err == nil {
				t.Errorf("%s: accepted", key)
				continue
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "--sink t: "+key+" ") || strings.ContainsFunc(msg, unicode.IsControl) {
				t.Errorf("%s: %q: want one printable line naming the key", key, msg)
			}
		}
	}
}

func TestCheckPlan(t *testing.T) {
	e := func(set string) plan.Entry {
		return plan.Entry{Set: set, Prefix: netip.MustParsePrefix("193.0.2.1/32"), Direction: plan.Ingress, Protocol: plan.TCP, Port: 443}
	}
	if err := CheckPlan(plan.SinkPlan{Add: []plan.Entry{e("a"), e("b")}, Keep: []plan.Entry{e("c")}, Remove: []plan.Entry{e("Bad\n")}}); err != nil {
		t.Errorf("a plan removing a bad name was refused: %v", err)
	}
	for _, p := range []plan.SinkPlan{
		{Add: []plan.Entry{e("a"), e("a\nallow all;")}},
		{Keep: []plan.Entry{e("a"), e("a"), e("b\u2028")}},
		{Add: []plan.Entry{e("")}},
	} {
		err := CheckPlan(p)
		if err == nil || strings.ContainsFunc(err.Error(), unicode.IsControl) || strings.ContainsRune(err.Error(), '\u2028') {
			t.Errorf("plan %v: %v; want a printable refusal", p, err)
		}
	}
}
