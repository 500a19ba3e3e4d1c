package scripts

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/pdsafelist/pdsafelist/pkg/cmd/root"
	"github.com/pdsafelist/pdsafelist/pkg/testutil"
)

// unitKeys reads a unit file's Key=value lines; a key given twice keeps
// both values, space-joined, as systemd merges lists.
func unitKeys(t *testing.T, path string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, l := range strings.Split(string(data), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, "[") {
			continue
		}
		k, v, _ := strings.Cut(l, "=")
		out[k] = strings.TrimSpace(out[k] + " " + v)
	}
	return out
}

// ProtectHome=yes hides /root/.aws, so an AWS profile cannot work;
// read-only keeps it readable and still keeps writes out.
func TestSystemdUnitKeepsAWSProfilesReadable(t *testing.T) {
	if v := unitKeys(t, "systemd/pdsafelist.service")["ProtectHome"]; v != "read-only" {
		t.Errorf("ProtectHome=%s: want read-only (yes hides /root/.aws)", v)
	}
}

// Persistent=true acts on OnCalendar= only.
func TestSystemdTimerPersistentHasCalendar(t *testing.T) {
	k := unitKeys(t, "systemd/pdsafelist.timer")
	if k["Persistent"] == "true" && k["OnCalendar"] == "" {
		t.Error("Persistent=true without OnCalendar= does nothing")
	}
}

// The nginx example needs /etc/nginx and /var/log/nginx writable and two
// capabilities the default unit does not have; the drop-in adds exactly
// those, and the default unit stays without them.
func TestSystemdNginxDropIn(t *testing.T) {
	unit := unitKeys(t, "systemd/pdsafelist.service")
	drop := unitKeys(t, "systemd/dropins/nginx.conf")
	for _, c := range []string{"CAP_DAC_OVERRIDE", "CAP_NET_BIND_SERVICE"} {
		if strings.Contains(unit["CapabilityBoundingSet"], c) {
			t.Errorf("the default unit grants %s", c)
		}
		if !strings.Contains(drop["CapabilityBoundingSet"], c) || !strings.Contains(drop["AmbientCapabilities"], c) {
			t.Errorf("the nginx drop-in lacks %s", c)
		}
	}
	for _, p := range []string{"/etc/nginx", "/var/log/nginx"} {
		if !strings.Contains(" "+drop["ReadWritePaths"]+" ", " "+p+" ") {
			t.Errorf("the nginx drop-in does not make %s writable", p)
		}
	}
}

// NspawnTestEnv runs TestPackageInSystemdContainer outside CI, where
// PDSAFELIST_REQUIRE_INTEGRATION=1 runs it anyway.
const NspawnTestEnv = "PDSAFELIST_NSPAWN_TEST"

// nspawnRoot is the cached Debian 12 root (scripts/systemd/nspawn-root.sh).
func nspawnRoot() string {
	if r := os.Getenv("PDSAFELIST_NSPAWN_ROOT"); r != "" {
		return r
	}
	return "/var/lib/machines/pdsl"
}

// The release's .deb, installed with dpkg -i into a Debian 12 booted by
// systemd in a container, runs under the packaged unit: the host sinks,
// and the template page's nginx and HAProxy examples with their documented
// drop-ins against nginx and HAProxy running as services, whose check
// runs, whose reload reaches the real daemon, and whose list decides who
// gets through (scripts/systemd/nspawn-check.sh).
func TestPackageInSystemdContainer(t *testing.T) {
	if os.Getenv(NspawnTestEnv) != "1" && !testutil.Required() {
		t.Skip("set " + NspawnTestEnv + "=1 to boot the .deb in a systemd-nspawn container (minutes; docs/packages.md)")
	}
	testutil.Integration(t, true, "systemd-nspawn", "debootstrap", "goreleaser", "dpkg-deb")
	root := nspawnRoot()
	if out, err := exec.Command("bash", "systemd/nspawn-root.sh", root).CombinedOutput(); err != nil {
		t.Fatalf("nspawn-root.sh %s: %v\n%s", root, err, out)
	}
	// PDSAFELIST_NSPAWN_DEB reuses a .deb (scripts/release-check.sh leaves
	// one in dist/) instead of building the snapshot.
	deb := os.Getenv("PDSAFELIST_NSPAWN_DEB")
	if deb == "" {
		_, deb = releaseSnapshot(t)
	}
	deb, err := filepath.Abs(deb)
	if err != nil {
		t.Fatal(err)
	}
	// PDSAFELIST_NSPAWN_EXAMPLES keeps the examples for nspawn-check.sh by hand.
	examples := os.Getenv("PDSAFELIST_NSPAWN_EXAMPLES")
	if examples == "" {
		examples = t.TempDir()
	} else if err := os.MkdirAll(examples, 0o755); err != nil {
		t.Fatal(err)
	}
	writeContainerExamples(t, examples)
	out, err := exec.Command("bash", "systemd/nspawn-check.sh", root, deb, examples).CombinedOutput()
	t.Logf("nspawn-check.sh:\n%s", out)
	if err != nil {
		t.Fatalf("nspawn-check.sh: %v (the FAIL lines above)", err)
	}
	for _, want := range []string{"PASS dpkg -i", "PASS nginx example: a second address", "PASS HAProxy example: a second address"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the report lacks %q", want)
		}
	}
}

// writeContainerExamples writes the template page's nginx and HAProxy
// examples, as the docs give them, for nspawn-check.sh: the sink entries of
// the config the packaged unit reads, nginx's server with the page's
// location block, and the page's haproxy.cfg.
func writeContainerExamples(t *testing.T, dir string) {
	t.Helper()
	write := func(name string, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sinks := func(entry map[string]any) []byte {
		data, err := yaml.Marshal([]map[string]any{entry})
		if err != nil {
			t.Fatal(err)
		}
		return data
	}

	// nginx: the page gives a --sink; the unit reads a config, whose sink
	// entry has the same keys (`+` in a flag is a space).
	spec, location := exampleSink(t, "nginx", "nginx")
	entry := flagToEntry(t, spec)
	if entry["path"] != "/etc/nginx/pagerduty-webhooks.conf" || !strings.Contains(location, "include /etc/nginx/pagerduty-webhooks.conf;") {
		t.Fatalf("the nginx example no longer writes and includes /etc/nginx/pagerduty-webhooks.conf (%v); update nspawn-check.sh", entry["path"])
	}
	write("nginx-sink.yaml", sinks(entry))
	write("nginx-site.conf", []byte("server {\n    listen 80;\n"+location+"}\n\n# The example's backend.\nserver {\n    listen 127.0.0.1:8080;\n    return 200 \"app\\n\";\n}\n"))

	// HAProxy: the page's config entry and haproxy.cfg, as written.
	_, cfg := exampleSink(t, "haproxy", "haproxy")
	if !strings.Contains(cfg, "bind :8080") || !strings.Contains(cfg, "server app1 127.0.0.1:9000") {
		t.Fatalf("the HAProxy example no longer binds :8080 with a backend on 127.0.0.1:9000; update nspawn-check.sh:\n%s", cfg)
	}
	write("haproxy.cfg", []byte(cfg))
	var found []byte
	for _, b := range docBlocks(t) {
		if b.file != "docs/sinks/template.md" || b.lang != "yaml" || !strings.Contains(b.text, "format: haproxy") {
			continue
		}
		var doc struct {
			Sinks []map[string]any `yaml:"sinks"`
		}
		if err := yaml.Unmarshal([]byte(b.text), &doc); err != nil || len(doc.Sinks) != 1 {
			t.Fatalf("%s: want a config with one sink: %v", b, err)
		}
		found = sinks(doc.Sinks[0])
	}
	if found == nil {
		t.Fatal("docs/sinks/template.md has no HAProxy config example (a yaml block with format: haproxy)")
	}
	write("haproxy-sink.yaml", found)
}

// flagToEntry turns --sink TYPE:ARG?k=v&... into the config's sink entry.
func flagToEntry(t *testing.T, spec string) map[string]any {
	t.Helper()
	s, err := root.Registry().ParseFlag(spec)
	if err != nil {
		t.Fatal(err)
	}
	entry := map[string]any{"type": s.Type}
	if len(s.Sets) > 0 {
		entry["sets"] = s.Sets
	}
	for i := 0; i+1 < len(s.Options.Content); i += 2 {
		entry[s.Options.Content[i].Value] = s.Options.Content[i+1].Value
	}
	return entry
}
