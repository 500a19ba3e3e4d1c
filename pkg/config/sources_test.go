package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// A set's sources list is kept as typed specs, each named by where it sits
// in the config; the old keys become the same specs.
func TestSourcesList(t *testing.T) {
	f, err := Parse("t.yaml", []byte(`
catalog:
  vendor:
    direction: egress
    ports: [443]
    dns: [status.example.com]
    urls: [https://example.com/ips.json]
    static: [193.0.2.0/24]
    sources:
      - {type: http, url: "https://ip-ranges.example/ip-ranges.json", format: json, jq: '.prefixes[].ip_prefix'}
      - {type: file, path: /etc/ips.txt, format: text}
`))
	if err != nil {
		t.Fatal(err)
	}
	s := Defaults().Apply(f)
	s.Sets = []string{"vendor"}
	sets, err := s.SelectedSets()
	if err != nil {
		t.Fatal(err)
	}
	type got struct{ Type, Origin string }
	var specs []got
	for _, sp := range sets[0].SourceSpecs() {
		specs = append(specs, got{sp.Type, sp.Origin})
	}
	want := []got{
		{"dns", "catalog.vendor.dns[0]"},
		{"http", "catalog.vendor.urls[0]"},
		{"static", "catalog.vendor.static"},
		{"http", "config catalog.vendor.sources[0]"},
		{"file", "config catalog.vendor.sources[1]"},
	}
	if diff := cmp.Diff(want, specs); diff != "" {
		t.Errorf("specs (-want +got):\n%s", diff)
	}
	var opts struct {
		URL    string `yaml:"url"`
		Format string `yaml:"format"`
		JQ     string `yaml:"jq"`
	}
	if err := sets[0].SourceSpecs()[3].Decode(&opts); err != nil || opts.JQ != ".prefixes[].ip_prefix" || opts.Format != "json" {
		t.Errorf("decode: %+v, %v", opts, err)
	}
}

func TestSourcesListErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"catalog: {x: {direction: egress, ports: [443], sources: [{url: https://a.example/}]}}", "config catalog.x.sources[0]: missing type"},
		{"catalog: {x: {direction: egress, ports: [443], sources: [http]}}", "config catalog.x.sources[0]: want a mapping with a type"},
		{"catalog: {x: {direction: egress, ports: [443], sources: []}}", "set x: no sources"},
	} {
		f, err := Parse("t.yaml", []byte(tc.yaml))
		if err == nil {
			s := Defaults().Apply(f)
			s.Sets = []string{"x"}
			_, err = s.SelectedSets()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: got %v, want %q", tc.yaml, err, tc.want)
		}
	}
}

// On a built-in set, sources adds to the built-in names and lists; an
// empty dns or urls list drops those.
func TestSourcesOnBuiltinSet(t *testing.T) {
	f, err := Parse("t.yaml", []byte(`
catalog:
  webhooks:
    urls: []
    sources: [{type: file, path: /etc/hooks.txt, format: text}]
  api:
    sources: [{type: static, prefixes: [44.2.2.2]}]
`))
	if err != nil {
		t.Fatal(err)
	}
	s := Defaults().Apply(f)
	s.Sets = []string{"api", "webhooks"}
	sets, err := s.SelectedSets()
	if err != nil {
		t.Fatal(err)
	}
	var got [][]string
	for _, set := range sets {
		var types []string
		for _, sp := range set.SourceSpecs() {
			types = append(types, sp.Type)
		}
		got = append(got, types)
	}
	if diff := cmp.Diff([][]string{{"dns", "http", "static"}, {"file"}}, got); diff != "" {
		t.Errorf("source types (-want +got):\n%s", diff)
	}
}
