package synccmd_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A vendor set publishes whole networks; its own limits loosen the checks
// for it alone. Every other set keeps the global limits, and what the sink
// holds for the vendor set is read back under the vendor set's limits, so
// the second run and a saved plan neither call it unsafe nor refuse it.
func TestPerSetLimitsEndToEnd(t *testing.T) {
	e := newLimitsEnv(t)
	write := func(hooksStatic, vendorLimits string) {
		t.Helper()
		cfg := "sets: [hooks, vendor]\ncatalog:\n" +
			"  hooks:\n    direction: ingress\n    ports: [443]\n    static: [" + hooksStatic + "]\n" +
			"  vendor:\n    direction: ingress\n    ports: [443]\n    static: [44.128.0.0/16, 2001:db9::/32]\n" + vendorLimits
		if err := os.WriteFile(filepath.Join(e.dir, "pdsafelist.yaml"), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("193.0.2.20", "    limits: {min_ipv4_prefix: 16, min_ipv6_prefix: 32}\n")
	planFile := filepath.Join(e.dir, "plan.json")
	if r := e.sync("--plan-out", planFile); r.code != 0 {
		t.Fatalf("plan-out: code %d\n%s%s", r.code, r.out, r.errOut)
	}
	if r := e.sync("--plan", planFile); r.code != 0 || !strings.Contains(e.file(), "44.128.0.0/16") || !strings.Contains(e.file(), "2001:db9::/32") {
		t.Fatalf("saved plan: code %d\n%s%s\n%s", r.code, r.out, r.errOut, e.file())
	}
	before := e.file()
	if r := e.sync(); r.code != 0 || strings.Contains(r.out+r.errOut, "unsafe") || e.file() != before {
		t.Fatalf("second run: code %d\n%s%s", r.code, r.out, r.errOut)
	}

	// The loosened limit belongs to the vendor set only.
	write("193.0.2.20, 54.64.0.0/16", "    limits: {min_ipv4_prefix: 16}\n")
	r := e.sync()
	if r.code != 3 || !strings.Contains(r.errOut, "54.64.0.0/16") || !strings.Contains(r.errOut, "broader than /24") {
		t.Errorf("a /16 in another set: code %d, want 3\n%s%s", r.code, r.out, r.errOut)
	}
	if strings.Contains(e.file(), "54.64.0.0") {
		t.Error("another set's /16 reached the firewall")
	}
	// Only one key given: the other is the global one (/48), so the
	// vendor's /32 is refused and the set frozen.
	if !strings.Contains(r.errOut, "2001:db9::/32") || !strings.Contains(r.errOut, "broader than /48") {
		t.Errorf("the unset IPv6 key did not fall back to the global limit\n%s", r.errOut)
	}

	write("193.0.2.20", "    limits: {min_ipv4: 16}\n")
	if r := e.sync(); r.code != 1 || !strings.Contains(r.errOut, "min_ipv4_prefix") {
		t.Errorf("unknown key: code %d, want 1 with the valid keys\n%s", r.code, r.errOut)
	}
	write("193.0.2.20", "    limits: {min_ipv4_prefix: 0}\n")
	if r := e.sync(); r.code != 1 || !strings.Contains(r.errOut, "vendor") || !strings.Contains(r.errOut, "min_ipv4_prefix 0") {
		t.Errorf("out-of-range limit: code %d, want 1 naming the set\n%s", r.code, r.errOut)
	}
}
