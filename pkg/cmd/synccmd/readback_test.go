package synccmd_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pdsafelist/pdsafelist/pkg/testutil/ec2fake"
)

// Rules hand-added to our iptables chain under our marker are read back
// and validated like answers: two /1 rules opening port 443 to the world
// are removed on the next sync, and a drift check sees them.
func TestReadBackUnsafeIptablesFile(t *testing.T) {
	e := newEnv(t)
	rules := filepath.Join(e.dir, "rules.v4")
	e.sink = "iptables-file:" + rules + "?check=never"
	e.config("193.0.2.10", "193.0.2.12")
	if r := e.run("sync"); r.code != 0 {
		t.Fatalf("first sync: code %d %s", r.code, r.errOut)
	}
	data := readFile(t, rules)
	legacy := `-A PDSAFELIST-IN -s 0.0.0.0/1 -p tcp -m tcp --dport 443 -m comment --comment "pdsafelist:legacy" -j ACCEPT
-A PDSAFELIST-IN -s 128.0.0.0/1 -p tcp -m tcp --dport 443 -m comment --comment "pdsafelist:legacy" -j ACCEPT
-I INPUT 1`
	if !strings.Contains(data, "\n-I INPUT 1") {
		t.Fatalf("unexpected rules file:\n%s", data)
	}
	if err := os.WriteFile(rules, []byte(strings.Replace(data, "-I INPUT 1", legacy, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	r := e.run("sync", "--dry-run", "--detailed-exitcode", "-o", "json")
	if r.code != 2 {
		t.Fatalf("drift check: code %d, want 2\n%s%s", r.code, r.out, r.errOut)
	}
	var doc struct {
		Sinks []struct {
			Remove []struct{ Prefix string } `json:"remove"`
			Unsafe []struct{ Prefix string } `json:"unsafe"`
		} `json:"sinks"`
	}
	if err := json.Unmarshal([]byte(r.out), &doc); err != nil {
		t.Fatal(err)
	}
	if s := doc.Sinks[0]; len(s.Unsafe) != 2 || len(s.Remove) != 2 || s.Unsafe[0].Prefix != "0.0.0.0/1" || s.Unsafe[1].Prefix != "128.0.0.0/1" {
		t.Errorf("plan: %+v", doc.Sinks)
	}
	if !strings.Contains(r.errOut, "fail validation and are removed") {
		t.Errorf("no warning: %s", r.errOut)
	}
	r = e.run("sync", "--max-delete", "0")
	if r.code != 0 || !strings.Contains(r.out, "(unsafe)") {
		t.Fatalf("sync: code %d\n%s%s", r.code, r.out, r.errOut)
	}
	if got := readFile(t, rules); strings.Contains(got, "legacy") || strings.Count(got, "pdsafelist:hooks") != 2 {
		t.Errorf("legacy rules survived the sync:\n%s", got)
	}
}

// A set dropped from the config is retired: its entries are removed with
// a warning. A set that is defined but not selected keeps its entries.
func TestRetiredSetIsRemoved(t *testing.T) {
	e := newEnv(t)
	cfg := filepath.Join(e.dir, "pdsafelist.yaml")
	write := func(sets string, catalog string) {
		t.Helper()
		if err := os.WriteFile(cfg, []byte("sets: ["+sets+"]\ncatalog:\n"+catalog), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	hooks := "  hooks:\n    direction: ingress\n    ports: [443]\n    static: [193.0.2.10]\n"
	old := "  oldset:\n    direction: ingress\n    ports: [443]\n    static: [193.0.2.20]\n"
	write("hooks, oldset", hooks+old)
	if r := e.run("sync"); r.code != 0 {
		t.Fatalf("first sync: code %d %s", r.code, r.errOut)
	}
	// Not selected, still defined: kept.
	write("hooks", hooks+old)
	if r := e.run("sync", "--detailed-exitcode"); r.code != 0 || !strings.Contains(e.file(), "193.0.2.20") {
		t.Fatalf("unselected set: code %d\n%s%s\n%s", r.code, r.out, r.errOut, e.file())
	}
	// Gone from the config: removed with a warning.
	write("hooks", hooks)
	r := e.run("sync")
	if r.code != 0 || strings.Contains(e.file(), "193.0.2.20") || !strings.Contains(e.file(), "193.0.2.10") {
		t.Fatalf("retired set: code %d\n%s%s\n%s", r.code, r.out, r.errOut, e.file())
	}
	if !strings.Contains(r.errOut, `of sets no longer defined or routed here are removed ("oldset")`) || !strings.Contains(r.out, "(retired set)") {
		t.Errorf("retirement not reported:\n%s%s", r.out, r.errOut)
	}
}

// EC2: a rule 0.0.0.0/0 tcp/443 described as ours is not "unchanged".
func TestReadBackUnsafeEC2Rule(t *testing.T) {
	e := newEnv(t)
	f, sg := e.ec2Group()
	f.AddRule(ec2fake.Rule{GroupID: sg, Protocol: "tcp", FromPort: 443, ToPort: 443, CIDR: "0.0.0.0/0", Description: "pdsafelist:legacy"})
	e.config("193.0.2.10")
	r := e.run("sync")
	if r.code != 0 || !strings.Contains(r.out, "0.0.0.0/0") || !strings.Contains(r.out, "(unsafe)") {
		t.Fatalf("code %d\n%s%s", r.code, r.out, r.errOut)
	}
	for _, rule := range f.Rules(sg) {
		if rule.CIDR == "0.0.0.0/0" {
			t.Errorf("world-open rule kept: %+v", rule)
		}
	}
	if got := len(f.Rules(sg)); got != 1 {
		t.Errorf("%d rules, want 1: %+v", got, f.Rules(sg))
	}
}

// ec2Group makes the env's sink one group of a fake EC2 endpoint.
func (e *env) ec2Group() (*ec2fake.Fake, string) {
	f := ec2fake.New()
	e.t.Cleanup(f.Close)
	e.t.Setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
	e.t.Setenv("AWS_SECRET_ACCESS_KEY", "SECRET")
	e.t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	sg := f.AddGroup()
	e.sink = "ec2:" + sg + "?region=us-east-1&endpoint=" + f.URL
	return f, sg
}
