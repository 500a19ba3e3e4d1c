package synccmd_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// evilScript writes a script that leaves marker behind when it runs.
func evilScript(t *testing.T, dir string) (script, marker string) {
	t.Helper()
	marker = filepath.Join(dir, "pwned")
	script = filepath.Join(dir, "evil.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"$(id -u)\" >"+marker+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return script, marker
}

// rawEdit rewrites a saved plan as JSON, as an attacker with write access
// to the file would, without the key.
func rawEdit(t *testing.T, path string, edit func(doc map[string]any)) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	edit(doc)
	if data, err = json.MarshalIndent(doc, "", "  "); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func firstSink(doc map[string]any) map[string]any {
	return doc["sinks"].([]any)[0].(map[string]any)
}

// A saved plan never chooses a command or a path: options smuggled into
// the file are refused before any sink is opened, so nothing runs and
// nothing is created.
func TestSavedPlanNeverRunsACommand(t *testing.T) {
	tests := []struct {
		name string
		// sink is the spec of the honest runs; edit turns the plan into
		// the attacker's.
		sink func(e *env) string
		edit func(e *env, sk map[string]any, script string)
		// created is a path the attack would create.
		created func(e *env) string
	}{
		{
			name: "nftables apply with the attacker's nft",
			sink: func(e *env) string { return "nftables:" + e.nft + "?check=never" },
			edit: func(e *env, sk map[string]any, script string) {
				sk["options"] = fmt.Sprintf("path: %s\ncheck: never\napply: true\nnft: %s\n", e.nft, script)
			},
			created: func(e *env) string { return e.nft },
		},
		{
			name: "template at another path with a reload",
			sink: func(e *env) string { return "template:" + filepath.Join(e.dir, "allow.conf") + "?format=nginx" },
			edit: func(e *env, sk map[string]any, script string) {
				other := filepath.Join(e.dir, "elsewhere", "allow.conf")
				sk["options"] = fmt.Sprintf("path: %s\nformat: nginx\nreload: %s\n", other, script)
				sk["name"] = "template:" + other
			},
			created: func(e *env) string { return filepath.Join(e.dir, "elsewhere") },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.sink = tt.sink(e)
			e.config("193.0.2.10")
			planFile := filepath.Join(e.dir, "plan.json")
			if r := e.run("sync", "--plan-out", planFile); r.code != 0 {
				t.Fatalf("plan-out: code %d %s", r.code, r.errOut)
			}
			script, marker := evilScript(t, e.dir)
			rawEdit(t, planFile, func(doc map[string]any) { tt.edit(e, firstSink(doc), script) })
			r := e.run("sync", "--plan", planFile)
			if _, err := os.Stat(marker); err == nil {
				t.Errorf("the plan's command ran")
			}
			if _, err := os.Stat(tt.created(e)); err == nil {
				t.Errorf("the plan created %s", tt.created(e))
			}
			if r.code != 3 || !strings.Contains(r.errOut, "saved-plan guard") {
				t.Fatalf("code %d, want 3 from the saved-plan guard:\n%s%s", r.code, r.out, r.errOut)
			}
		})
	}
}

// The applying run opens its sinks from its own config and flags; a plan
// made for other sinks, or the same sink with other options, is refused
// before any of them is opened.
func TestSavedPlanSinksMustMatch(t *testing.T) {
	e := newEnv(t)
	e.config("193.0.2.10")
	planFile := filepath.Join(e.dir, "plan.json")
	if r := e.run("sync", "--plan-out", planFile); r.code != 0 {
		t.Fatalf("plan-out: code %d %s", r.code, r.errOut)
	}
	script, marker := evilScript(t, e.dir)
	for _, spec := range []string{
		"nftables:" + e.nft + "?check=never&apply=true&nft=" + script,
		"nftables:" + e.nft + "?check=never&sets=hooks",
		"nftables:" + filepath.Join(e.dir, "other.nft") + "?check=never",
		"iptables-file:" + filepath.Join(e.dir, "rules.v4") + "?check=never",
	} {
		e.sink = spec
		r := e.run("sync", "--plan", planFile)
		if r.code != 3 || !strings.Contains(r.errOut, "saved-plan guard") || !strings.Contains(r.errOut, "was made for") {
			t.Errorf("%s: code %d, want 3 naming the mismatch:\n%s%s", spec, r.code, r.out, r.errOut)
		}
		if _, err := os.Stat(marker); err == nil {
			t.Fatalf("%s: a command ran", spec)
		}
	}
	if _, err := os.Stat(e.nft); err == nil {
		t.Fatal("a refused plan wrote the sink")
	}
	// The honest plan still applies.
	e.sink = ""
	if r := e.run("sync", "--plan", planFile); r.code != 0 || !strings.Contains(e.file(), "193.0.2.10/32") {
		t.Fatalf("honest plan: code %d %s", r.code, r.errOut)
	}
}

// An edited plan is refused whatever it edits: an address no source gave,
// a kept address moved to remove, a missing or wrong code, duplicate or
// unknown keys.
func TestSavedPlanIsAuthenticated(t *testing.T) {
	tests := []struct {
		name string
		edit func(doc map[string]any)
		raw  func(data []byte) []byte
		want string
	}{
		{
			name: "address no source gave",
			edit: func(doc map[string]any) {
				sk := firstSink(doc)
				sk["add"] = append(sk["add"].([]any), entryJSON("hooks", "45.33.32.156/32", "ingress", "tcp", 443))
			},
			want: "authentication",
		},
		{
			name: "served address moved from keep to remove",
			edit: func(doc map[string]any) {
				sk := firstSink(doc)
				keep := sk["keep"].([]any)
				sk["remove"], sk["keep"] = append(sk["remove"].([]any), keep[0]), keep[1:]
			},
			want: "authentication",
		},
		{
			name: "code removed",
			edit: func(doc map[string]any) { delete(doc, "mac") },
			want: "no authentication code",
		},
		{
			name: "code of another key",
			edit: func(doc map[string]any) { doc["mac"] = "hmac-sha256:" + strings.Repeat("ab", 32) },
			want: "authentication",
		},
		{
			name: "duplicate key",
			raw: func(data []byte) []byte {
				return []byte(strings.Replace(string(data), `"policy": "sync"`, `"policy": "sync", "policy": "create-only"`, 1))
			},
			want: `duplicate key "policy"`,
		},
		{
			name: "duplicate key in another case",
			raw: func(data []byte) []byte {
				return []byte(strings.Replace(string(data), `"policy": "sync"`, `"policy": "sync", "Policy": "create-only"`, 1))
			},
			want: `duplicate key "Policy"`,
		},
		{
			name: "unknown key",
			edit: func(doc map[string]any) { firstSink(doc)["options"] = "apply: true\n" },
			want: `unknown field "options"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.config("193.0.2.10", "193.0.2.12")
			if r := e.run("sync"); r.code != 0 {
				t.Fatalf("first sync: code %d %s", r.code, r.errOut)
			}
			before := e.file()
			e.config("193.0.2.10", "193.0.2.12", "193.0.2.14")
			planFile := filepath.Join(e.dir, "plan.json")
			if r := e.run("sync", "--plan-out", planFile); r.code != 0 {
				t.Fatalf("plan-out: code %d %s", r.code, r.errOut)
			}
			if tt.edit != nil {
				rawEdit(t, planFile, tt.edit)
			}
			if tt.raw != nil {
				data, err := os.ReadFile(planFile)
				if err != nil {
					t.Fatal(err)
				}
				edited := tt.raw(data)
				if string(edited) == string(data) {
					t.Fatal("the edit changed nothing")
				}
				if err := os.WriteFile(planFile, edited, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			r := e.run("sync", "--plan", planFile)
			if r.code != 3 || !strings.Contains(r.errOut, "saved-plan guard") || !strings.Contains(r.errOut, tt.want) {
				t.Fatalf("code %d, want 3 from the saved-plan guard naming %q:\n%s%s", r.code, tt.want, r.out, r.errOut)
			}
			if strings.Count(strings.TrimSpace(r.errOut), "\n") > 0 {
				t.Errorf("not one line:\n%s", r.errOut)
			}
			if e.file() != before {
				t.Fatalf("refused plan changed the sink:\n%s", e.file())
			}
		})
	}
}

// A plan made in one job and applied in another, with another state
// directory: the key travels with --plan-key-file or $PDSAFELIST_PLAN_KEY.
// Without it, or with another, the plan is refused; the state directory's
// own key is made 0600 on first use.
func TestSavedPlanKeyAcrossJobs(t *testing.T) {
	e := newEnv(t)
	e.config("193.0.2.10")
	planFile := filepath.Join(e.dir, "plan.json")
	if r := e.run("sync", "--plan-out", planFile); r.code != 0 {
		t.Fatalf("plan-out: code %d %s", r.code, r.errOut)
	}
	fi, err := os.Stat(filepath.Join(e.state, "plan.key"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state directory key: %v %v, want mode 0600", fi, err)
	}
	// Another job: a fresh state directory has no key.
	e.state = filepath.Join(e.dir, "state2")
	if r := e.run("sync", "--plan", planFile); r.code != 3 || !strings.Contains(r.errOut, "cannot verify") {
		t.Fatalf("no key: code %d, want 3:\n%s", r.code, r.errOut)
	}
	if _, err := os.Stat(filepath.Join(e.state, "plan.key")); err == nil {
		t.Fatal("--plan made a key, which could verify nothing")
	}

	keyFile := filepath.Join(e.dir, "ci.key")
	if err := os.WriteFile(keyFile, []byte(strings.Repeat("k", 40)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := e.run("sync", "--plan-key-file", keyFile, "--plan-out", planFile); r.code != 0 {
		t.Fatalf("plan-out with a key file: code %d %s", r.code, r.errOut)
	}
	e.state = filepath.Join(e.dir, "state3")
	if r := e.run("sync", "--plan", planFile); r.code != 3 || !strings.Contains(r.errOut, "cannot verify") {
		t.Fatalf("key file not given: code %d, want 3:\n%s", r.code, r.errOut)
	}
	t.Setenv("PDSAFELIST_PLAN_KEY", strings.Repeat("x", 40))
	if r := e.run("sync", "--plan", planFile); r.code != 3 || !strings.Contains(r.errOut, "authentication failed") {
		t.Fatalf("another key: code %d, want 3:\n%s", r.code, r.errOut)
	}
	t.Setenv("PDSAFELIST_PLAN_KEY", strings.Repeat("k", 40))
	if r := e.run("sync", "--plan", planFile); r.code != 0 || !strings.Contains(e.file(), "193.0.2.10/32") {
		t.Fatalf("key from the environment: code %d %s", r.code, r.errOut)
	}

	for _, bad := range []struct {
		mode os.FileMode
		data string
		want string
	}{
		{0o644, strings.Repeat("k", 40), "lets others read or write it"},
		{0o600, "short", "want at least 32"},
	} {
		if err := os.WriteFile(keyFile, []byte(bad.data), bad.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(keyFile, bad.mode); err != nil {
			t.Fatal(err)
		}
		if r := e.run("sync", "--plan-key-file", keyFile, "--plan", planFile); r.code != 3 || !strings.Contains(r.errOut, bad.want) {
			t.Errorf("key file %04o %q: code %d, want 3 naming %q:\n%s", bad.mode, bad.data, r.code, bad.want, r.errOut)
		}
		if r := e.run("sync", "--plan-key-file", keyFile, "--plan-out", planFile); r.code == 0 || !strings.Contains(r.errOut, bad.want) {
			t.Errorf("plan-out with key file %04o %q: code %d, want a refusal naming %q:\n%s", bad.mode, bad.data, r.code, bad.want, r.errOut)
		}
	}
}

// A plan made while a sink's ownership record is unreadable (a set name
// in the nft file edited by hand) keeps what the set still wants and
// applies, repairing the record, as a live run does.
func TestSavedPlanWithUnreadableRecord(t *testing.T) {
	e := newEnv(t)
	e.config("193.0.2.10", "193.0.2.12")
	if r := e.run("sync"); r.code != 0 {
		t.Fatalf("first sync: code %d %s", r.code, r.errOut)
	}
	good := e.file()
	edited := strings.ReplaceAll(good, "hooks_", "Hooks_")
	if edited == good {
		t.Fatalf("no set name to edit:\n%s", good)
	}
	if err := os.WriteFile(e.nft, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	planFile := filepath.Join(e.dir, "plan.json")
	if r := e.run("sync", "--plan-out", planFile); r.code != 0 || !strings.Contains(r.out, "Plan: 0 to add, 0 to remove, 1 to repair.") {
		t.Fatalf("plan-out: code %d\n%s%s", r.code, r.out, r.errOut)
	}
	if r := e.run("sync", "--plan", planFile); r.code != 0 {
		t.Fatalf("plan: code %d\n%s%s", r.code, r.out, r.errOut)
	}
	if e.file() != good {
		t.Fatalf("the record was not repaired:\n%s", e.file())
	}
}
