package scripts

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The README's first command must work as written: every step does what
// it says, nothing prints an unexpected error, and the demo shows the
// safety: a failed source freezes its set and removes nothing, 0.0.0.0/0
// is refused with exit 3, and the runs converge on no changes.
func TestDemoRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs the whole demo")
	}
	out := t.TempDir()
	cmd := exec.Command("bash", "demo.sh")
	cmd.Env = append(os.Environ(), "DEMO_OUT="+out)
	got, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("demo.sh: %v\n%s", err, got)
	}
	for _, l := range strings.Split(string(got), "\n") {
		low := strings.ToLower(l)
		if strings.HasPrefix(low, "error") || strings.HasPrefix(low, "warning") || strings.Contains(low, "(exit ") {
			t.Errorf("demo printed %q", l)
		}
	}
	if !strings.Contains(string(got), "Demo done.") {
		t.Errorf("demo did not finish:\n%s", got)
	}
	// The full plan is shown once, by the dry run; later runs show only
	// what differs.
	if n := strings.Count(string(got), "pdsafelist will make these changes"); n != 1 {
		t.Errorf("the demo prints the plan %d times, want once", n)
	}
	_, rest, ok := strings.Cut(string(got), "==> 4.")
	failed, rest, ok2 := strings.Cut(rest, "==> 5.")
	hostile, final, ok3 := strings.Cut(rest, "==> 6.")
	if !ok || !ok2 || !ok3 {
		t.Fatalf("demo lacks the steps 4 (a source fails), 5 (a hostile answer) and 6 (recovery):\n%s", got)
	}
	for _, c := range []struct{ part, want string }{
		{failed, "webhooks  ingress  tcp/443  FROZEN since"},
		{failed, "HTTP 404"},
		{failed, "nothing removed"},
		{hostile, "unsafe prefix 0.0.0.0/0"},
		{hostile, "exit 3"},
		{final, "No changes."},
	} {
		if !strings.Contains(c.part, c.want) {
			t.Errorf("demo lacks %q in:\n%s", c.want, c.part)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "pagerduty.nft")); err != nil {
		t.Errorf("no nftables file: %v", err)
	}
}
