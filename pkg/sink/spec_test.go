package sink

import (
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

type testOptions struct {
	Path    string        `yaml:"path"`
	Enforce string        `yaml:"enforce"`
	Wait    time.Duration `yaml:"wait"`
	Limit   int           `yaml:"limit"`
}

var testRegistry = Registry{"t": {ArgKey: "path"}}

// Option mistakes name the key, where it was given (the config file's line
// or the --sink flag), and the valid keys or the expected form.
func TestSpecDecodeErrors(t *testing.T) {
	doc := "sinks:\n  - type: t\n    path: /x\n\n    enfroce: both\n  - type: t\n    wait: 30\n"
	var root yaml.Node
	if err := yaml.Unmarshal([]byte(doc), &root); err != nil {
		t.Fatal(err)
	}
	sinks := root.Content[0].Content[1]
	check := func(spec Spec, want []string) {
		t.Helper()
		err := spec.Decode(&testOptions{})
		if err == nil {
			t.Fatalf("%s: no error", spec.Origin)
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q lacks %q", err, w)
			}
		}
		for _, leak := range []string{"not found in type", "!!int", "time.Duration", "testOptions"} {
			if strings.Contains(err.Error(), leak) {
				t.Errorf("error %q leaks %q", err, leak)
			}
		}
	}
	s0, err := testRegistry.FromConfigFile(sinks.Content[0], 0, "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	check(s0, []string{"sinks[0]", "c.yaml:5:", `unknown key "enfroce"`, "valid keys: path, enforce, wait, limit"})
	s1, err := testRegistry.FromConfigFile(sinks.Content[1], 1, "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	check(s1, []string{"sinks[1]", "c.yaml:7:", "wait", "30s"})
	f, err := testRegistry.ParseFlag("t:/x?limit=many")
	if err != nil {
		t.Fatal(err)
	}
	check(f, []string{"--sink t:/x?limit=many", "limit", "whole number"})
}
