package yamlcheck

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
)

type inner struct {
	Timeout time.Duration `yaml:"timeout"`
	Port    uint16        `yaml:"port"`
}

type sample struct {
	Name    string            `yaml:"name"`
	Count   int               `yaml:"count"`
	On      bool              `yaml:"on"`
	Ratio   float64           `yaml:"ratio"`
	Tags    []string          `yaml:"tags"`
	Labels  map[string]string `yaml:"labels"`
	Inner   inner             `yaml:"inner"`
	Raw     yaml.Node         `yaml:"raw"`
	Skipped string            `yaml:"-"`
	Plain   string
	Shared  `yaml:",inline"`
}

type Shared struct {
	Region string `yaml:"region"`
}

func decode(t *testing.T, doc, file string) (sample, error) {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(doc), &n); err != nil {
		t.Fatal(err)
	}
	var s sample
	return s, Decode(&n, &s, file)
}

func TestDecodeAccepts(t *testing.T) {
	got, err := decode(t, `
name: a
count: -3
on: true
ratio: 0.5
tags: [x, y]
labels: {k: v}
inner: {timeout: 30s, port: 65535}
raw: [anything, {goes: here}]
plain: p
region: eu
`, "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := sample{Name: "a", Count: -3, On: true, Ratio: 0.5, Tags: []string{"x", "y"}, Labels: map[string]string{"k": "v"},
		Inner: inner{Timeout: 30 * time.Second, Port: 65535}, Plain: "p", Shared: Shared{Region: "eu"}}
	got.Raw = yaml.Node{}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
	if _, err := decode(t, "", "c.yaml"); err != nil {
		t.Errorf("empty document: %v", err)
	}
	if _, err := decode(t, "name: ~\ninner: null", "c.yaml"); err != nil {
		t.Errorf("nulls: %v", err)
	}
}

// Each mistake is one line naming the file, the line, the dotted key and
// what was wanted, in the user's words rather than yaml's types.
func TestDecodeRefuses(t *testing.T) {
	for _, tt := range []struct{ doc, file, want string }{
		{"nmae: a", "c.yaml", `c.yaml:1: unknown key "nmae" (valid keys: name, count, on, ratio, tags, labels, inner, raw, plain, region)`},
		{"name: a\ninner: {port: 65536}", "c.yaml", `c.yaml:2: inner.port: want a whole number from 0 to 65535, got "65536"`},
		{"inner:\n  timeout: 30", "", `line 2: inner.timeout: want a duration such as 30s or 5m, got "30"`},
		{"inner:\n  timeout: soon", "c.yaml", `c.yaml:2: inner.timeout: want a duration such as 30s or 5m, got "soon"`},
		{"count: many", "c.yaml", `c.yaml:1: count: want a whole number, got "many"`},
		{"on: maybe", "c.yaml", `c.yaml:1: on: want true or false, got "maybe"`},
		{"ratio: half", "c.yaml", `c.yaml:1: ratio: want a number, got "half"`},
		{"tags: x", "c.yaml", `c.yaml:1: tags: want a list such as [a, b], got "x"`},
		{"tags: [x, [y]]", "c.yaml", `c.yaml:1: tags[1]: want a single value, got a list`},
		{"labels: [a]", "c.yaml", `c.yaml:1: labels: want a mapping, got a list`},
		{"labels: {a: {b: c}}", "c.yaml", `c.yaml:1: labels.a: want a single value, got a mapping`},
		{"inner: 5", "c.yaml", `c.yaml:1: inner: want a mapping with keys timeout, port, got "5"`},
		{"inner: {bogus: 1}", "c.yaml", `c.yaml:1: unknown key "inner.bogus" (valid keys: timeout, port)`},
		{"skipped: x", "c.yaml", `unknown key "skipped"`},
	} {
		_, err := decode(t, tt.doc, tt.file)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: got %v, want %q", tt.doc, err, tt.want)
			continue
		}
		if strings.Contains(err.Error(), "\n") || strings.Contains(err.Error(), "!!") {
			t.Errorf("%q: not in the user's words on one line: %q", tt.doc, err)
		}
	}
}

// An alias is checked as what it points to.
func TestDecodeFollowsAliases(t *testing.T) {
	if _, err := decode(t, "plain: &p 70000\ninner: {port: *p}", "c.yaml"); err == nil || !strings.Contains(err.Error(), "inner.port") {
		t.Fatalf("alias to a bad port: %v", err)
	}
}

func TestKeys(t *testing.T) {
	if got, want := Keys(reflect.TypeFor[*inner]()), []string{"timeout", "port"}; !cmp.Equal(got, want) {
		t.Errorf("Keys = %v, want %v", got, want)
	}
}
