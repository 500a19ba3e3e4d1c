package synccmd_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pdsafelist/pdsafelist/pkg/controller"
	"github.com/pdsafelist/pdsafelist/pkg/state"
)

// editPlan rewrites one sink of a saved plan file as a careless hand
// holding the key would, signing it again, so the checks behind the
// plan's code are tested. An edit that no longer decodes stays unsigned:
// the decoder refuses it before the code is looked at.
func editPlan(t *testing.T, path, stateDir string, edit func(sk map[string]any)) {
	t.Helper()
	rawEdit(t, path, func(doc map[string]any) { edit(firstSink(doc)) })
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var saved controller.SavedPlan
	if json.Unmarshal(data, &saved) != nil {
		return
	}
	key, err := state.PlanKey(stateDir, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := controller.Sign(&saved, key); err != nil {
		t.Fatal(err)
	}
	if data, err = json.Marshal(saved); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func entryJSON(set, prefix, dir, proto string, port int) map[string]any {
	return map[string]any{"set": set, "prefix": prefix, "direction": dir, "protocol": proto, "port": port}
}

func readFile(t *testing.T, path string) string {
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(data)
}

// A saved plan is untrusted input: every edit below is refused with exit 3
// by the saved-plan guard, and nothing is written.
func TestSavedPlanIsUntrusted(t *testing.T) {
	tests := []struct {
		name string
		sink func(e *env) (spec, path string)
		edit func(sk map[string]any)
		want string
	}{
		{
			name: "world added",
			edit: func(sk map[string]any) {
				sk["add"] = append(sk["add"].([]any), entryJSON("hooks", "0.0.0.0/0", "ingress", "tcp", 443))
			},
			want: "unsafe prefix 0.0.0.0/0",
		},
		{
			name: "keep emptied on a sink holding 20 entries",
			edit: func(sk map[string]any) { sk["keep"] = []any{} },
			want: "neither keeps nor removes",
		},
		{
			name: "kept entry moved to remove and keep padded with a foreign entry",
			edit: func(sk map[string]any) {
				sk["keep"] = append(sk["keep"].([]any)[1:], entryJSON("hooks", "44.1.2.0/24", "ingress", "tcp", 443))
			},
			want: "which the sink does not hold under our marker",
		},
		{
			name: "set name carrying nft statements",
			edit: func(sk map[string]any) {
				sk["add"] = []any{entryJSON("hooks_tcp443_v4 { }\n}\ntable inet evil {\nchain x { type filter hook input priority -500; accept; }\n", "198.52.100.99/32", "ingress", "tcp", 443)}
			},
			want: "set name must match",
		},
		{
			name: "empty protocol for the iptables sink",
			sink: func(e *env) (string, string) {
				p := filepath.Join(e.dir, "rules.v4")
				return "iptables-file:" + p + "?check=never", p
			},
			edit: func(sk map[string]any) {
				sk["add"] = []any{entryJSON("hooks", "198.52.100.99/32", "ingress", "", 443)}
			},
			want: `protocol ""`,
		},
		{
			name: "bare CIDR for the iptables sink",
			sink: func(e *env) (string, string) {
				p := filepath.Join(e.dir, "rules.v4")
				return "iptables-file:" + p + "?check=never", p
			},
			edit: func(sk map[string]any) {
				sk["add"] = []any{entryJSON("hooks", "198.52.100.99/32", "", "", 0)}
			},
			want: "but set hooks is ingress tcp on ports [443] here",
		},
		{
			name: "port the set does not have",
			edit: func(sk map[string]any) {
				sk["add"] = []any{entryJSON("hooks", "198.52.100.99/32", "ingress", "tcp", 22)}
			},
			want: "on ports [443]",
		},
		{
			name: "protocol no sink writes",
			edit: func(sk map[string]any) {
				sk["add"] = []any{entryJSON("hooks", "198.52.100.99/32", "ingress", "icmp", 443)}
			},
			want: `protocol "icmp": want tcp or udp`,
		},
		{
			name: "direction no sink writes",
			edit: func(sk map[string]any) {
				sk["add"] = []any{entryJSON("hooks", "198.52.100.99/32", "sideways", "tcp", 443)}
			},
			want: `direction "sideways": want ingress or egress`,
		},
		{
			name: "set not defined",
			edit: func(sk map[string]any) {
				sk["add"] = []any{entryJSON("backdoor", "198.52.100.99/32", "ingress", "tcp", 443)}
			},
			want: "not defined or not routed",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			target := e.nft
			if tt.sink != nil {
				e.sink, target = tt.sink(e)
			}
			held := addrs(20, 100)
			e.config(held...)
			if r := e.run("sync"); r.code != 0 {
				t.Fatalf("first sync: code %d %s", r.code, r.errOut)
			}
			before := readFile(t, target)
			e.config(append(held, "198.52.101.1")...)
			planFile := filepath.Join(e.dir, "plan.json")
			if r := e.run("sync", "--plan-out", planFile); r.code != 0 {
				t.Fatalf("plan-out: code %d %s", r.code, r.errOut)
			}
			editPlan(t, planFile, e.state, tt.edit)
			metrics := filepath.Join(e.dir, "m.prom")
			r := e.run("sync", "--plan", planFile, "--metrics-file", metrics)
			if m := readFile(t, metrics); !strings.Contains(m, `guard="saved_plan"} 1`) {
				t.Errorf("metrics do not count the refusal:\n%s", m)
			}
			if r.code != 3 || !strings.Contains(r.errOut, "saved-plan guard") || !strings.Contains(r.errOut, tt.want) {
				t.Fatalf("code %d, want 3 naming the saved-plan guard and %q:\n%s%s", r.code, tt.want, r.out, r.errOut)
			}
			if strings.Contains(r.errOut, "goroutine") || strings.Count(strings.TrimSpace(r.errOut), "\n") > 1 {
				t.Errorf("not a one-line error:\n%s", r.errOut)
			}
			if got := readFile(t, target); got != before {
				t.Errorf("refused plan changed %s:\n%s", target, got)
			}
		})
	}
}

// A saved plan goes through max-delete like a live run, unless --force.
func TestSavedPlanMeetsMaxDelete(t *testing.T) {
	e := newEnv(t)
	e.config(addrs(20, 100)...)
	if r := e.run("sync"); r.code != 0 {
		t.Fatal(r.errOut)
	}
	before := e.file()
	e.config(addrs(10, 100)...)
	e.now = e.now.Add(2 * time.Hour) // past retention
	planFile := filepath.Join(e.dir, "plan.json")
	// --plan-out with --force saves the plan the guard would refuse.
	if r := e.run("sync", "--plan-out", planFile, "--force"); r.code != 0 {
		t.Fatalf("plan-out: code %d %s", r.code, r.errOut)
	}
	r := e.run("sync", "--plan", planFile)
	if r.code != 3 || !strings.Contains(r.errOut, "max-delete guard") {
		t.Fatalf("code %d:\n%s%s", r.code, r.out, r.errOut)
	}
	if e.file() != before {
		t.Fatal("refused plan was applied")
	}
	if r := e.run("sync", "--plan", planFile, "--force"); r.code != 0 || strings.Count(e.file(), "198.52.100.") != 10 {
		t.Fatalf("--force: code %d %s\n%s", r.code, r.errOut, e.file())
	}
}

// A saved plan run is a run: it saves state, reports its real duration and
// writes the metrics file.
func TestSavedPlanRunIsARun(t *testing.T) {
	e := newEnv(t)
	e.config("193.0.2.10")
	planFile := filepath.Join(e.dir, "plan.json")
	if r := e.run("sync", "--plan-out", planFile); r.code != 0 {
		t.Fatal(r.errOut)
	}
	metrics := filepath.Join(e.dir, "m.prom")
	if r := e.run("sync", "--plan", planFile, "--metrics-file", metrics); r.code != 0 {
		t.Fatalf("code %d %s", r.code, r.errOut)
	}
	if _, err := os.Stat(filepath.Join(e.state, "state.json")); err != nil {
		t.Errorf("saved plan run saved no state: %v", err)
	}
	m := readFile(t, metrics)
	if !strings.Contains(m, "pdsafelist_run_success 1") {
		t.Errorf("metrics:\n%s", m)
	}
}
