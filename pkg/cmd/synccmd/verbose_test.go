package synccmd_test

import (
	"strings"
	"testing"
)

// -vv logs each sink read and write; -v the run's milestones only.
func TestVerboseLogsSinkReadsAndWrites(t *testing.T) {
	e := newEnv(t)
	e.config("193.0.2.10")
	r := e.run("sync", "-vv")
	if r.code != 0 {
		t.Fatalf("code %d: %s", r.code, r.errOut)
	}
	for _, want := range []string{"sink read", "sink write", "sets resolved", "sink planned", "nftables:" + e.nft} {
		if !strings.Contains(r.errOut, want) {
			t.Errorf("-vv log lacks %q:\n%s", want, r.errOut)
		}
	}
	r = e.run("sync", "-v")
	if !strings.Contains(r.errOut, "sink planned") || strings.Contains(r.errOut, "sink read") {
		t.Errorf("-v: want milestones without debug lines:\n%s", r.errOut)
	}
}
