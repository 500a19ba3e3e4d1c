// Package testutil holds helpers shared by tests and by the offline demo.
package testutil

import (
	"os"
	"os/exec"
	"testing"
)

// RequireEnv is set by CI: there a missing tool or privilege fails the test
// instead of skipping it, so integration tests cannot silently vanish.
const RequireEnv = "PDSAFELIST_REQUIRE_INTEGRATION"

// Required reports whether integration tests must run.
func Required() bool { return os.Getenv(RequireEnv) == "1" }

// Integration skips t (or fails it under RequireEnv) unless the process is
// root and every named binary is on PATH.
func Integration(t testing.TB, root bool, tools ...string) {
	t.Helper()
	if testing.Short() && !Required() {
		t.Skip("integration test skipped in -short mode")
	}
	if root && os.Geteuid() != 0 {
		Unavailable(t, "needs root")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			Unavailable(t, "needs "+tool+" on PATH")
		}
	}
}

// Unavailable skips t with why, or fails it under RequireEnv; for helpers
// whose prerequisites are more than a binary on PATH.
func Unavailable(t testing.TB, why string) {
	t.Helper()
	if Required() {
		t.Fatalf("%s, and %s=1 forbids skipping", why, RequireEnv)
	}
	t.Skip(why)
}
