package testutil

import (
	"os/exec"
	"path/filepath"
	"testing"
)

// BuildCommand compiles the pdsafelist command into t's temporary
// directory, for tests that run it as separate processes.
func BuildCommand(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "pdsafelist")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/pdsafelist/pdsafelist/cmd/pdsafelist").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}
