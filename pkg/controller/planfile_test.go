package controller

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
)

const seedPlan = `{
  "format_version": 2,
  "created_at": "2026-11-22T12:00:00Z",
  "policy": "sync",
  "sinks": [
    {
      "type": "nftables",
      "origin": "--sink nftables:/tmp/out.nft",
      "spec_sha256": "5d5e3f0c1c4b2f4e3a8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f",
      "name": "nftables:/tmp/out.nft",
      "state_fingerprint": "0c6f4c1b9f9b5f3d1b0e5b9d6c8c2e4f1a3b5c7d9e1f2a4b6c8d0e2f4a6b8c0d",
      "add": [{"set": "hooks", "prefix": "193.0.2.11/32", "direction": "ingress", "protocol": "tcp", "port": 443}],
      "remove": [{"set": "legacy", "prefix": "0.0.0.0/1", "direction": "ingress", "protocol": "tcp", "port": 443}],
      "keep": [{"set": "hooks", "prefix": "2001:db9::10/128", "direction": "ingress", "protocol": "tcp", "port": 443},
               {"set": "pl", "prefix": "44.242.69.0/24", "direction": "", "protocol": "", "port": 0}]
    }
  ]
}`

var testKey = []byte("0123456789abcdef0123456789abcdef")

// resign signs data again, as whoever holds the key could, so the checks
// behind the code are tested too. Data that does not decode is left as
// it is: the decoder refuses it before the code is looked at.
func resign(data []byte) []byte {
	var doc SavedPlan
	if json.Unmarshal(data, &doc) != nil {
		return data
	}
	if Sign(&doc, testKey) != nil {
		return data
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return data
	}
	return out
}

func TestParsePlan(t *testing.T) {
	if _, err := ParsePlan([]byte(seedPlan), testKey, plan.DefaultLimits); err == nil || !strings.Contains(err.Error(), "no authentication code") {
		t.Fatalf("unsigned seed plan: %v", err)
	}
	if _, err := ParsePlan(resign([]byte(seedPlan)), testKey, plan.DefaultLimits); err != nil {
		t.Fatalf("seed plan refused: %v", err)
	}
	tests := []struct {
		name, old, new, want string
		guard                bool
		// asIs: the edit is tested on the signed bytes as they are, since
		// signing again would marshal the edit away.
		asIs bool
	}{
		{"world added", `"193.0.2.11/32"`, `"0.0.0.0/0"`, "unsafe prefix 0.0.0.0/0", true, false},
		{"host bits", `"193.0.2.11/32"`, `"193.0.2.11/24"`, "host bits", true, false},
		{"newline in set", `"set": "hooks", "prefix": "193`, `"set": "hooks\n}", "prefix": "193`, "set name", true, false},
		{"empty protocol", `"protocol": "tcp", "port": 443}],
      "remove"`, `"protocol": "", "port": 443}],
      "remove"`, `protocol ""`, true, false},
		{"bad fingerprint", `"0c6f`, `"zz6f`, "SHA-256", true, false},
		{"bad spec digest", `"5d5e`, `"5D5E`, "spec_sha256", true, false},
		{"unknown policy", `"policy": "sync"`, `"policy": "yolo"`, "policy", true, false},
		{"no sinks", `"sinks": [`, `"sinks": [], "x": [`, "no sinks", true, false},
		{"version", `"format_version": 2`, `"format_version": 1`, "format_version 1, want 2", false, false},
		{"options smuggled", `"spec_sha256"`, `"options": "nft: /tmp/evil\n", "spec_sha256"`, `unknown field "options"`, true, true},
		{"duplicate key", `"policy": "sync"`, `"policy": "sync", "policy": "create-only"`, `duplicate key "policy"`, true, true},
		{"duplicate key in another case", `"name": "nft`, `"Name": "x", "name": "nft`, `duplicate key "name"`, true, true},
		{"duplicate key in an entry", `"port": 443`, `"port": 443, "port": 22`, `duplicate key "port"`, true, true},
		{"not json", `{`, `[`, "not a pdsafelist plan", false, false},
	}
	for _, tt := range tests {
		var data []byte
		if tt.asIs {
			signed := indent(t, resign([]byte(seedPlan)))
			data = []byte(strings.Replace(signed, tt.old, tt.new, 1))
			if string(data) == signed {
				t.Fatalf("%s: edit did not apply", tt.name)
			}
		} else {
			doc := strings.Replace(seedPlan, tt.old, tt.new, 1)
			if doc == seedPlan {
				t.Fatalf("%s: edit did not apply", tt.name)
			}
			data = resign([]byte(doc))
		}
		_, err := ParsePlan(data, testKey, plan.DefaultLimits)
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

// indent lays data out as --plan-out does, so edits can find their text.
func indent(t *testing.T, data []byte) string {
	var doc SavedPlan
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// FuzzParsePlan: a saved plan is untrusted. Parsing never panics, and
// whatever it accepts adds, keeps and shows only valid entries.
func FuzzParsePlan(f *testing.F) {
	f.Add(resign([]byte(seedPlan)))
	f.Add([]byte(seedPlan))
	f.Add([]byte(strings.Replace(seedPlan, `"193.0.2.11/32"`, `"0.0.0.0/0"`, 1)))
	f.Add([]byte(strings.Replace(seedPlan, `"protocol": "tcp"`, `"protocol": ""`, 1)))
	f.Add([]byte(`{"format_version":2,"policy":"sync","sinks":[{"type":"x","name":"x","state_fingerprint":"` + strings.Repeat("a", 64) + `","add":null,"keep":[{"prefix":"::/0"}]}]}`))
	f.Add([]byte(`{"format_version":2}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		// As found, and signed: the fuzzer cannot forge a code, so the
		// checks behind it are fuzzed through the signed copy.
		if doc, err := ParsePlan(data, testKey, plan.DefaultLimits); err == nil && doc.MAC == "" {
			t.Fatal("accepted a plan with no code")
		}
		doc, err := ParsePlan(resign(data), testKey, plan.DefaultLimits)
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
		}
	})
}
