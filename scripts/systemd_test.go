package scripts

import (
	"os"
	"strings"
	"testing"
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
