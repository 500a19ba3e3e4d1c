package schema_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pdsafelist/pdsafelist/docs/schema"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/schemacheck"
)

// schemaFor picks the schema of a golden JSON document by its name.
func schemaFor(t *testing.T, path string) string {
	switch base := filepath.Base(path); {
	case strings.HasPrefix(base, "resolve"):
		return schema.Resolve
	case strings.HasPrefix(base, "sync"):
		return schema.Sync
	case strings.HasPrefix(base, "plan"):
		return schema.Plan
	}
	t.Fatalf("%s: no schema for this golden file; name it resolve*, sync* or plan*", path)
	return ""
}

// goldens are the JSON outputs kept as golden files anywhere in the tree.
func goldens(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, dir := range []string{"../../pkg/render/testdata", "../../pkg/controller/testdata", "../../pkg/cmd/synccmd/testdata", "../../pkg/cmd/resolve/testdata"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
		out = append(out, files...)
	}
	if len(out) < 4 {
		t.Fatalf("found %d golden JSON files, want at least the 4 of pkg/render", len(out))
	}
	return out
}

func TestGoldenOutputsValidate(t *testing.T) {
	for _, path := range goldens(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			schemacheck.Assert(t, schemaFor(t, path), data)
		})
	}
}

// A mutated document must fail, or the schemas would accept anything.
func TestMutatedDocumentsFail(t *testing.T) {
	data, err := os.ReadFile("../../pkg/render/testdata/sync-read-back.json")
	if err != nil {
		t.Fatal(err)
	}
	mutations := map[string]func(doc map[string]any){
		"format_version 2":   func(d map[string]any) { d["format_version"] = 2 },
		"unknown top key":    func(d map[string]any) { d["extra"] = true },
		"summary missing":    func(d map[string]any) { delete(d, "summary") },
		"set key misspelled": func(d map[string]any) { set(d)["prefixs"] = set(d)["prefixes"]; delete(set(d), "prefixes") },
		"bad direction":      func(d map[string]any) { set(d)["direction"] = "both" },
		"bad prefix":         func(d map[string]any) { set(d)["prefixes"] = []any{"193.0.2.10"} },
		"entry extra key":    func(d map[string]any) { removal(d)["comment"] = "x" },
		"port out of range":  func(d map[string]any) { removal(d)["port"] = 70000 },
		"negative count":     func(d map[string]any) { d["summary"].(map[string]any)["add"] = -1 },
		"source kind":        func(d map[string]any) { set(d)["sources"].([]any)[0].(map[string]any)["kind"] = "ldap" },
		"stale_since":        func(d map[string]any) { set(d)["stale_since"] = "yesterday" },
	}
	for name, mutate := range mutations {
		t.Run(name, func(t *testing.T) {
			var doc map[string]any
			if err := json.Unmarshal(data, &doc); err != nil {
				t.Fatal(err)
			}
			mutate(doc)
			out, err := json.Marshal(doc)
			if err != nil {
				t.Fatal(err)
			}
			if err := schemacheck.Validate(schema.Sync, out); err == nil {
				t.Errorf("mutation %q validated", name)
			}
		})
	}
	// The unmutated document validates, so each failure is the mutation's.
	if err := schemacheck.Validate(schema.Sync, data); err != nil {
		t.Fatal(err)
	}
}

func set(d map[string]any) map[string]any { return d["sets"].([]any)[0].(map[string]any) }
func removal(d map[string]any) map[string]any {
	return d["sinks"].([]any)[0].(map[string]any)["remove"].([]any)[0].(map[string]any)
}

// The saved plan's schema is strict too.
func TestMutatedPlanFails(t *testing.T) {
	good := `{"format_version":2,"created_at":"2026-11-26T03:00:00Z","policy":"sync","sinks":[{"type":"nftables","origin":"--sink","spec_sha256":"` + strings.Repeat("b", 64) + `","name":"nftables:x.nft","state_fingerprint":"` + strings.Repeat("a", 64) + `","add":[{"set":"events","prefix":"193.0.2.10/32","direction":"egress","protocol":"tcp","port":443}],"remove":[],"keep":[]}],"mac":"hmac-sha256:` + strings.Repeat("c", 64) + `"}`
	if err := schemacheck.Validate(schema.Plan, []byte(good)); err != nil {
		t.Fatalf("good plan: %v", err)
	}
	for name, bad := range map[string]string{
		"policy":      strings.Replace(good, `"sync"`, `"yolo"`, 1),
		"fingerprint": strings.Replace(good, strings.Repeat("a", 64), "abc", 1),
		"no sinks":    good[:strings.Index(good, `"sinks"`)] + `"sinks":[]}`,
		"created_at":  strings.Replace(good, "2026-11-26T03:00:00Z", "now", 1),
		"extra key":   strings.Replace(good, `"policy"`, `"dry_run":true,"policy"`, 1),
		"options":     strings.Replace(good, `"spec_sha256"`, `"options":"nft: /tmp/x","spec_sha256"`, 1),
		"no mac":      strings.Replace(good, `,"mac":"hmac-sha256:`+strings.Repeat("c", 64)+`"`, "", 1),
	} {
		if err := schemacheck.Validate(schema.Plan, []byte(bad)); err == nil {
			t.Errorf("%s: mutated plan validated", name)
		}
	}
}
