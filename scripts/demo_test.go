package scripts

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The README's first command must work as written: every step succeeds,
// nothing prints an error, and the last run finds nothing to change.
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
	if _, err := os.Stat(filepath.Join(out, "pagerduty.nft")); err != nil {
		t.Errorf("no nftables file: %v", err)
	}
}
