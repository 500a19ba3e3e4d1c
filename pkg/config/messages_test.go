package config

import (
	"strings"
	"testing"
)

// Config mistakes name the key, the file and line, and the valid keys or the
// expected form, in the user's words rather than yaml's.
func TestParseErrorsExplainTheMistake(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want []string
		not  []string
	}{
		{"region: us\ntimeout: 30\n", []string{"t.yaml:2:", "timeout", "30s"}, []string{"!!int", "time.Duration"}},
		{"region: us\ndns:\n  attempts: three\n", []string{"t.yaml:3:", "dns.attempts", "whole number"}, []string{"!!str", "int"}},
		{"region: us\nsets: api\n", []string{"t.yaml:2:", "sets", "list"}, []string{"!!str", "[]string"}},
		{"region: us\n\nregoin: eu\n", []string{"t.yaml:3:", `regoin`, "unknown key", "valid keys", "region", "nameservers"}, []string{"config.File", "not found in type"}},
		{"catalog:\n  x:\n    direction: egress\n    ports: [443, 70000]\n", []string{"t.yaml:4:", "catalog.x.ports[1]", "65535"}, []string{"uint16"}},
		{"catalog:\n  x:\n    direction: egress\n    prots: [443]\n", []string{"t.yaml:4:", "catalog.x.prots", "valid keys", "ports", "min_entries"}, []string{"SetSpec"}},
	} {
		_, err := Parse("t.yaml", []byte(tc.yaml))
		if err == nil {
			t.Errorf("%q: no error", tc.yaml)
			continue
		}
		msg := err.Error()
		for _, w := range tc.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%q: error %q lacks %q", tc.yaml, msg, w)
			}
		}
		for _, n := range tc.not {
			if strings.Contains(msg, n) {
				t.Errorf("%q: error %q leaks %q", tc.yaml, msg, n)
			}
		}
	}
}

// A source's option mistakes point at the config file's line.
func TestSourceOptionErrorsNameFileAndLine(t *testing.T) {
	f, err := Parse("t.yaml", []byte("catalog:\n  x:\n    direction: egress\n    ports: [443]\n    sources:\n      - type: http\n        url: https://a.example/\n        max_bytes: lots\n"))
	if err != nil {
		t.Fatal(err)
	}
	var o struct {
		URL      string `yaml:"url"`
		MaxBytes int64  `yaml:"max_bytes"`
	}
	err = f.Catalog["x"].SourceSpecs()[0].Decode(&o)
	if err == nil || !strings.Contains(err.Error(), "t.yaml:8:") || !strings.Contains(err.Error(), "max_bytes") || !strings.Contains(err.Error(), "whole number") {
		t.Errorf("got %v, want t.yaml:8: max_bytes: want a whole number", err)
	}
}
