package synccmd_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// With --grace 0 a frozen set still vouches for its last answer: an
// address it shares with another set is not revoked in the run that the
// other set, which labels the rule, drops it (issue 20 item 7).
func TestGraceZeroFrozenSetVouches(t *testing.T) {
	e := newEnv(t)
	f, sg := e.ec2Group()
	list := func(name, body string) string {
		path := filepath.Join(e.dir, name)
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	const shared = "198.52.100.7"
	// alpha sorts first, so its label is on the shared rule.
	alpha := list("alpha.json", `["`+shared+`", "198.52.100.1"]`)
	beta := list("beta.json", `["`+shared+`"]`)
	cfg := "sets: [alpha, beta]\ncatalog:\n" +
		"  alpha:\n    direction: ingress\n    ports: [443]\n    sources: [{type: file, path: " + alpha + "}]\n" +
		"  beta:\n    direction: ingress\n    ports: [443]\n    sources: [{type: file, path: " + beta + "}]\n"
	if err := os.WriteFile(filepath.Join(e.dir, "pdsafelist.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := e.run("sync", "--grace", "0"); r.code != 0 {
		t.Fatalf("first sync: code %d\n%s%s", r.code, r.out, r.errOut)
	}
	labels := func() map[string]string {
		out := map[string]string{}
		for _, rule := range f.Rules(sg) {
			out[rule.CIDR] = rule.Description
		}
		return out
	}
	if got := labels()[shared+"/32"]; got != "pdsafelist:alpha" {
		t.Fatalf("shared rule labelled %q, want pdsafelist:alpha: %v", got, labels())
	}
	// beta's list goes missing (frozen) in the run alpha drops the address.
	if err := os.Remove(beta); err != nil {
		t.Fatal(err)
	}
	list("alpha.json", `["198.52.100.1"]`)
	e.now = e.now.Add(10 * time.Minute)
	r := e.run("sync", "--grace", "0")
	if r.code != 1 || !strings.Contains(r.out, "FROZEN") {
		t.Fatalf("second sync: code %d, want 1 with beta frozen\n%s%s", r.code, r.out, r.errOut)
	}
	if _, ok := labels()[shared+"/32"]; !ok {
		t.Errorf("the address frozen beta last vouched for was revoked: %v\n%s", labels(), r.out)
	}
}
