package synccmd_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A dry run changes nothing and must not report a success: the metrics
// file keeps its bytes and time while changes wait. A frozen set reports
// what it still vouches for, not zero.
func TestMetricsDryRunAndFrozenSet(t *testing.T) {
	e := newEnv(t)
	metrics := filepath.Join(e.dir, "m.prom")
	e.config("193.0.2.10", "193.0.2.20")
	if r := e.run("sync", "--metrics-file", metrics); r.code != 0 {
		t.Fatalf("sync: code %d %s", r.code, r.errOut)
	}
	before, err := os.ReadFile(metrics)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(metrics)
	e.config("193.0.2.10", "193.0.2.30")
	e.now = e.now.Add(time.Minute)
	if r := e.run("sync", "--dry-run", "--detailed-exitcode", "--metrics-file", metrics); r.code != 2 {
		t.Fatalf("dry run: code %d %s", r.code, r.errOut)
	}
	after, _ := os.ReadFile(metrics)
	st2, _ := os.Stat(metrics)
	if string(after) != string(before) || !st2.ModTime().Equal(st.ModTime()) {
		t.Errorf("a dry run rewrote the metrics file:\n%s", after)
	}

	// Every source fails: the set freezes and reports the two addresses
	// its sinks keep.
	cfg := "sets: [hooks]\ncatalog:\n  hooks:\n    direction: ingress\n    ports: [443]\n    urls: [\"https://127.0.0.1:1/list.json\"]\n"
	if err := os.WriteFile(filepath.Join(e.dir, "pdsafelist.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := e.run("sync", "--timeout", "5s", "--metrics-file", metrics); r.code != 1 {
		t.Fatalf("failing source: code %d %s", r.code, r.errOut)
	}
	m, _ := os.ReadFile(metrics)
	for _, want := range []string{`pdsafelist_set_frozen{set="hooks"} 1`, `pdsafelist_set_addresses{set="hooks"} 2`} {
		if !strings.Contains(string(m), want) {
			t.Errorf("metrics lack %s:\n%s", want, m)
		}
	}
}
