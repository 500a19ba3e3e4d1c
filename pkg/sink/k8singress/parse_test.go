package k8singress

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/pdsafelist/pdsafelist/pkg/sink"
)

// The allow-list is read as ingress-nginx reads it: comma-separated,
// spaces trimmed, CIDRs masked and bare addresses as hosts; anything else
// is the first bad item, for which ingress-nginx refuses the whole list.
func TestParseValue(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
		bad  string
	}{
		{"", nil, ""},
		{"44.242.69.192/32,2600:1f14:d0c:9d00::a1/128", []string{"44.242.69.192/32", "2600:1f14:d0c:9d00::a1/128"}, ""},
		{" 10.1.2.3/8 , 192.0.2.7,192.0.2.7/32", []string{"10.0.0.0/8", "192.0.2.7/32"}, ""},
		{"192.0.2.1/32,,192.0.2.2/32", []string{"192.0.2.1/32", "192.0.2.2/32"}, "(empty)"},
		{"192.0.2.1/32,allow all;", []string{"192.0.2.1/32"}, "allow all;"},
		{"0.0.0.0/0", nil, "0.0.0.0/0"},
		{"fe80::1%eth0", nil, "fe80::1%eth0"},
	} {
		got, bad, ok := parseValue(c.in)
		var s []string
		for _, p := range got {
			s = append(s, p.String())
		}
		// An empty item is one ingress-nginx trips on too.
		if !ok && bad == "" {
			bad = "(empty)"
		}
		if !slices.Equal(s, c.want) || bad != c.bad || ok != (c.bad == "") {
			t.Errorf("parseValue(%q) = %v, bad %q; want %v, bad %q", c.in, s, bad, c.want, c.bad)
		}
	}
}

// The record is read strictly: any part it would not have written makes
// it unreadable, never a partial reading.
func TestDecodeRecord(t *testing.T) {
	ok := `{"annotation":"a.example/list","owner":"prod","sets":{"webhooks":["192.0.2.0/24","2001:db8::1/128"]}}`
	r, good := decodeRecord(ok, "a.example/list")
	if !good || r.Owner != "prod" || !slices.Equal(r.entries(), r.entries()) || len(r.entries()) != 2 || r.entries()[0].Prefix != netip.MustParsePrefix("192.0.2.0/24") {
		t.Fatalf("decodeRecord(%s) = %+v, %v", ok, r, good)
	}
	for _, bad := range []string{
		"",
		"PagerDuty webhooks - managed by pdsafelist",
		`{"annotation":"b.example/list","owner":"prod","sets":{}}`,
		`{"annotation":"a.example/list","owner":"prod"}`,
		`{"annotation":"a.example/list","owner":"prod","sets":{"web hooks":["192.0.2.0/24"]}}`,
		`{"annotation":"a.example/list","owner":"prod","sets":{"webhooks":["192.0.2.1/24"]}}`,
		`{"annotation":"a.example/list","owner":"prod","sets":{"webhooks":["0.0.0.0/0"]}}`,
		`{"annotation":"a.example/list","owner":"prod","sets":{"webhooks":["2001:DB8::1/128"]}}`,
		`{"annotation":"a.example/list","owner":"prod","sets":{"webhooks":["192.0.2.0/24"]},"extra":1}`,
		`{"annotation":"a.example/list","owner":"prod","sets":{"webhooks":["192.0.2.0/24"]}} {}`,
	} {
		if _, good := decodeRecord(bad, "a.example/list"); good {
			t.Errorf("decodeRecord(%q) accepted", bad)
		}
	}
	// A broken record still tells whose it was, when it says so.
	if o, found := recordOwner(`{"owner":"other","sets":5}`); !found || o != "other" {
		t.Errorf("recordOwner = %q, %v", o, found)
	}
}

// Two annotations get two companions; each names its annotation.
func TestCompanion(t *testing.T) {
	a, b := Companion(DefaultAnnotation), Companion("traefik.ingress.kubernetes.io/whitelist-source-range")
	if a == b || len(a) != len(CompanionPrefix)+12 {
		t.Errorf("companions %q and %q", a, b)
	}
}

// The option table on docs/sinks/k8s-ingress-annotation.md shows
// Factory.Options: a spec that leaves a key out gets that default.
func TestOpenTakesTheDocumentedDefaults(t *testing.T) {
	reg := sink.Registry{Type: Factory}
	spec, err := reg.ParseFlag(Type + ":payments/webhooks")
	if err != nil {
		t.Fatal(err)
	}
	s, err := reg.Open(spec, sink.Env{OwnerID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	a := s.(*Annotator)
	want := Factory.Options().(Options)
	if a.annotation != want.Annotation || a.max != want.MaxPrefixes {
		t.Errorf("opened with annotation %q, max_prefixes %d; Options says %q, %d", a.annotation, a.max, want.Annotation, want.MaxPrefixes)
	}
}
