package synccmd_test

import (
	"strings"
	"testing"
)

// -q keeps the plan text off stdout (cron logs that must be all JSON); exit
// codes, errors and the applied result are unchanged.
func TestQuietPrintsNoPlan(t *testing.T) {
	e := newEnv(t)
	e.config("193.0.2.10", "2001:db9::10")
	r := e.run("sync", "-q", "--detailed-exitcode")
	if r.code != 2 || r.out != "" || !strings.Contains(e.file(), "193.0.2.10/32") {
		t.Fatalf("quiet sync: code %d, stdout %q, stderr %q", r.code, r.out, r.errOut)
	}
	r = e.run("sync", "--quiet", "--log-format", "json", "--max-delete", "0", "--min-entries", "5")
	if r.code == 0 || r.out != "" || r.errOut == "" {
		t.Fatalf("quiet failing sync: code %d, stdout %q, stderr %q", r.code, r.out, r.errOut)
	}
	for _, line := range strings.Split(strings.TrimSpace(r.errOut), "\n") {
		if !strings.HasPrefix(line, "{") {
			t.Errorf("stderr line not JSON: %q", line)
		}
	}
	r = e.run("sync", "-q", "-o", "json")
	if r.code != 0 || !strings.HasPrefix(r.out, "{") {
		t.Errorf("quiet with -o json still prints the document asked for: code %d, stdout %q", r.code, r.out)
	}
}
