package controller

import (
	"errors"
	"strings"
	"testing"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
)

const seedPlan = `{
  "format_version": 1,
  "created_at": "2026-11-22T12:00:00Z",
  "policy": "sync",
  "sinks": [
    {
      "type": "nftables",
      "origin": "--sink nftables:/tmp/out.nft",
      "options": "path: /tmp/out.nft\n",
      "name": "nftables:/tmp/out.nft",
      "state_fingerprint": "0c6f4c1b9f9b5f3d1b0e5b9d6c8c2e4f1a3b5c7d9e1f2a4b6c8d0e2f4a6b8c0d",
      "add": [{"set": "hooks", "prefix": "193.0.2.11/32", "direction": "ingress", "protocol": "tcp", "port": 443}],
      "remove": [{"set": "legacy", "prefix": "0.0.0.0/1", "direction": "ingress", "protocol": "tcp", "port": 443}],
      "keep": [{"set": "hooks", "prefix": "2001:db9::10/128", "direction": "ingress", "protocol": "tcp", "port": 443},
               {"set": "pl", "prefix": "44.242.69.0/24", "direction": "", "protocol": "", "port": 0}]
    }
  ]
}`

func TestParsePlan(t *testing.T) {
	if _, err := ParsePlan([]byte(seedPlan), plan.DefaultLimits); err != nil {
		t.Fatalf("seed plan refused: %v", err)
	}
	tests := []struct {
		name, old, new, want string
		guard                bool
	}{
		{"world added", `"193.0.2.11/32"`, `"0.0.0.0/0"`, "unsafe prefix 0.0.0.0/0", true},
		{"host bits", `"193.0.2.11/32"`, `"193.0.2.11/24"`, "host bits", true},
		{"newline in set", `"set": "hooks", "prefix": "193`, `"set": "hooks\n}", "prefix": "193`, "set name", true},
		{"empty protocol", `"protocol": "tcp", "port": 443}],
      "remove"`, `"protocol": "", "port": 443}],
      "remove"`, `protocol ""`, true},
		{"bad fingerprint", `"0c6f`, `"zz6f`, "SHA-256", true},
		{"unknown policy", `"policy": "sync"`, `"policy": "yolo"`, "policy", true},
		{"no sinks", `"sinks": [`, `"sinks": [], "x": [`, "no sinks", true},
		{"version", `"format_version": 1`, `"format_version": 2`, "format_version 2", false},
		{"not json", `{`, `[`, "not a pdsafelist plan", false},
	}
	for _, tt := range tests {
		doc := strings.Replace(seedPlan, tt.old, tt.new, 1)
		if doc == seedPlan {
			t.Fatalf("%s: edit did not apply", tt.name)
		}
		_, err := ParsePlan([]byte(doc), plan.DefaultLimits)
		var g *plan.GuardError
		switch {
		case err == nil || !strings.Contains(err.Error(), tt.want):
			t.Errorf("%s: got %v, want %q", tt.name, err, tt.want)
		case errors.As(err, &g) != tt.guard:
			t.Errorf("%s: guard refusal %v, want %v: %v", tt.name, !tt.guard, tt.guard, err)
		case strings.Contains(err.Error(), "\n"):
			t.Errorf("%s: not one line: %q", tt.name, err)
		}
	}
}

// FuzzParsePlan: a saved plan is untrusted. Parsing never panics, and
// whatever it accepts adds, keeps and shows only valid entries.
func FuzzParsePlan(f *testing.F) {
	f.Add([]byte(seedPlan))
	f.Add([]byte(strings.Replace(seedPlan, `"193.0.2.11/32"`, `"0.0.0.0/0"`, 1)))
	f.Add([]byte(strings.Replace(seedPlan, `"protocol": "tcp"`, `"protocol": ""`, 1)))
	f.Add([]byte(`{"format_version":1,"policy":"sync","sinks":[{"type":"x","name":"x","state_fingerprint":"` + strings.Repeat("a", 64) + `","add":null,"keep":[{"prefix":"::/0"}]}]}`))
	f.Add([]byte(`{"format_version":1}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		doc, err := ParsePlan(data, plan.DefaultLimits)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error not one line: %q", err)
			}
			return
		}
		if len(doc.Sinks) == 0 {
			t.Fatal("accepted a plan with no sinks")
		}
		for _, ss := range doc.Sinks {
			for _, e := range append(append(append([]plan.Entry{}, ss.Add...), ss.Keep...), ss.Covered...) {
				if err := e.Validate(plan.DefaultLimits); err != nil {
					t.Fatalf("accepted an invalid entry: %v", err)
				}
			}
			for _, e := range ss.Remove {
				if !e.Prefix.IsValid() {
					t.Fatalf("accepted an invalid removal %v", e)
				}
			}
			for _, name := range ss.Sets {
				if !plan.ValidSetName(name) {
					t.Fatalf("accepted set name %q", name)
				}
			}
			if _, err := ss.Spec("fuzz"); err != nil && strings.Contains(err.Error(), "\n") {
				t.Fatalf("spec error not one line: %q", err)
			}
		}
	})
}
