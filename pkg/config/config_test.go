package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/pdsafelist/pdsafelist/pkg/plan"
)

func TestExampleConfigLoads(t *testing.T) {
	f, err := Load(filepath.Join("..", "..", "testdata", "pdsafelist.yaml"), true)
	if err != nil {
		t.Fatal(err)
	}
	s := Defaults().Apply(f)
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	sets, err := s.SelectedSets()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, set := range sets {
		names = append(names, set.Name)
	}
	if diff := cmp.Diff([]string{"events", "api", "app", "webhooks", "monitoring"}, names); diff != "" {
		t.Errorf("sets (-want +got):\n%s", diff)
	}
	if got := sets[3]; !cmp.Equal(got.Ports, []uint16{443, 8443}) || got.MinEntries != 3 || got.Direction != "ingress" || len(got.URLs) != 1 {
		t.Errorf("webhooks overlay not applied: %+v", got)
	}
	if s.Guards.MaxDelete.String() != "25%" || s.Grace != 2*time.Hour || s.MaxTTL != 12*time.Hour || s.StateDir != "/var/lib/pdsafelist" || s.MetricsFile == "" || s.Notify.RoutingKey == "" {
		t.Errorf("unattended settings not applied: %+v", s)
	}
	if s.OwnerID != "prod" || s.DNS.QueryTimeout != 2*time.Second || len(s.Sinks) != 11 {
		t.Errorf("settings not applied: owner %q query timeout %s sinks %d", s.OwnerID, s.DNS.QueryTimeout, len(s.Sinks))
	}
}

func TestCatalog(t *testing.T) {
	sets, err := Catalog("all", "https://mirror.example/lists/")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]SetSpec{
		"events":   {Name: "events", Direction: "egress", Protocol: "tcp", Ports: []uint16{443}, DNS: []string{"events.pagerduty.com", "events.eu.pagerduty.com"}},
		"api":      {Name: "api", Direction: "egress", Protocol: "tcp", Ports: []uint16{443}, DNS: []string{"api.pagerduty.com", "api.eu.pagerduty.com"}, URLs: []string{"https://mirror.example/lists/rest-api-us-service-region-json", "https://mirror.example/lists/rest-api-eu-service-region-json"}},
		"app":      {Name: "app", Direction: "egress", Protocol: "tcp", Ports: []uint16{443}, DNS: []string{"app.pagerduty.com", "app.eu.pagerduty.com"}},
		"webhooks": {Name: "webhooks", Direction: "ingress", Protocol: "tcp", Ports: []uint16{443}, URLs: []string{"https://mirror.example/lists/webhooks-us-service-region-json", "https://mirror.example/lists/webhooks-eu-service-region-json"}},
	}
	if len(sets) != len(want) {
		t.Fatalf("got %d sets", len(sets))
	}
	for _, s := range sets {
		if diff := cmp.Diff(want[s.Name], s); diff != "" {
			t.Errorf("set %s (-want +got):\n%s", s.Name, diff)
		}
	}
	us, _ := Catalog("us", DefaultListsURL)
	if us[0].DNS[0] != "events.pagerduty.com" || len(us[0].DNS) != 1 {
		t.Errorf("us events = %v", us[0].DNS)
	}
}

func TestLegacyWebhookListIsOptIn(t *testing.T) {
	s := Defaults()
	sets, _ := s.SelectedSets()
	for _, set := range sets {
		for _, u := range set.URLs {
			if u == LegacyWebhookIPsURL {
				t.Fatal("legacy list used by default")
			}
		}
	}
	s.WebhookIPsURL = LegacyWebhookIPsURL
	sets, _ = s.SelectedSets()
	if got := sets[3].URLs; len(got) != 2 || got[1] != LegacyWebhookIPsURL {
		t.Errorf("webhooks URLs = %v", got)
	}
}

// Bad input gets one line that says where and why.
func TestBadInput(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown key", "regoin: us\n", `unknown key "regoin" (valid keys: region, sets,`},
		{"bad duration", "timeout: soon\n", "test.yaml:1: timeout: want a duration such as 30s"},
		{"bad region", "region: ap\n", `region "ap"`},
		{"http list URL", "pagerduty_lists_url: http://example.com\n", "want an https:// URL"},
		{"bad policy", "policy: yolo\n", `policy "yolo"`},
		{"bad limit", "limits: {min_ipv4_prefix: 40}\n", "min_ipv4_prefix 40"},
		{"unknown set", "sets: [evnets]\n", `unknown set "evnets"`},
		{"bad set name", "catalog: {Bad-Name: {direction: egress, ports: [1], static: [193.0.2.1]}}\n", `set "Bad-Name"`},
		{"set without sources", "catalog: {x: {direction: egress, ports: [443]}}\n", "no sources"},
		{"set bad direction", "catalog: {x: {direction: out, ports: [443], static: [193.0.2.1]}}\n", `direction "out"`},
		{"set without ports", "catalog: {x: {direction: egress, static: [193.0.2.1]}}\n", "no ports"},
		{"set bad protocol", "catalog: {x: {direction: egress, protocol: icmp, ports: [1], static: [193.0.2.1]}}\n", `protocol "icmp"`},
		{"set http url", "catalog: {x: {direction: egress, ports: [1], urls: [http://a/b]}}\n", "want an https:// URL"},
		{"bad max_delete", "max_delete: lots\n", `max-delete "lots"`},
		{"negative grace", "grace: -1h\n", "grace -1h0m0s"},
		{"negative max_ttl", "max_ttl: -1h\n", "max_ttl -1h0m0s"},
		{"max_ttl too long", "max_ttl: 8760h\n", "max_ttl 8760h0m0s: want more than 0 and at most 168h0m0s"},
		{"notify over http", "notify: {routing_key: k, url: http://events.example/v2}\n", "want an https:// URL"},
		{"port out of range", "catalog: {x: {direction: egress, ports: [70000], static: [193.0.2.1]}}\n", "test.yaml:1: catalog.x.ports[0]: want a whole number from 0 to 65535"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := func() error {
				f, err := Parse("test.yaml", []byte(tt.yaml))
				if err != nil {
					return err
				}
				s := Defaults().Apply(f)
				if err := s.Validate(); err != nil {
					return err
				}
				_, err = s.SelectedSets()
				return err
			}()
			if err == nil {
				t.Fatal("accepted")
			}
			if msg := err.Error(); !strings.Contains(msg, tt.want) || strings.Contains(msg, "\n") {
				t.Errorf("error %q: want one line containing %q", msg, tt.want)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(filepath.Join(dir, "pdsafelist.yaml"), false); err != nil {
		t.Errorf("missing default config is an error: %v", err)
	}
	if _, err := Load(filepath.Join(dir, "named.yaml"), true); err == nil {
		t.Error("missing named config accepted")
	}
	empty := filepath.Join(dir, "empty.yaml")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(empty, true); err != nil {
		t.Errorf("empty config: %v", err)
	}
}

func TestMinEntriesFlag(t *testing.T) {
	m, err := ParseMinEntries([]string{"2", "webhooks=5"})
	if err != nil {
		t.Fatal(err)
	}
	s := Defaults()
	s.MinEntries = m
	sets, err := s.SelectedSets()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, set := range sets {
		got[set.Name] = set.MinEntries
	}
	if diff := cmp.Diff(map[string]int{"events": 2, "api": 2, "app": 2, "webhooks": 5}, got); diff != "" {
		t.Errorf("min entries (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"x", "webhooks=-1", "=3"} {
		m, err := ParseMinEntries([]string{bad})
		if err == nil {
			s.MinEntries = m
			_, err = s.SelectedSets()
		}
		if err == nil {
			t.Errorf("--min-entries %q accepted", bad)
		}
	}
}

// The config is found where operators look: the flag, the environment,
// the working directory, then /etc/pdsafelist.
func TestLocate(t *testing.T) {
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	files := map[string]bool{}
	exists := func(p string) bool { return files[p] }
	check := func(flag, wantPath string, wantExplicit bool) {
		t.Helper()
		if p, ex := Locate(flag, getenv, exists); p != wantPath || ex != wantExplicit {
			t.Errorf("Locate(%q) with env %v files %v = %q, %v; want %q, %v", flag, env, files, p, ex, wantPath, wantExplicit)
		}
	}
	check("", "", false)
	files[SystemPath] = true
	check("", SystemPath, false)
	files[DefaultPath] = true
	check("", DefaultPath, false)
	env[EnvVar] = "/srv/pd.yaml"
	check("", "/srv/pd.yaml", true)
	check("x.yaml", "x.yaml", true)
}

// A direction or protocol in any case is the same one: the set's spec and
// the plan's entries both read "ingress" and "udp".
func TestDirectionAnyCase(t *testing.T) {
	f, err := Parse("test.yaml", []byte("sets: [x]\ncatalog: {x: {direction: Ingress, protocol: UDP, ports: [443], static: [193.0.2.1]}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	s := Defaults().Apply(f)
	sets, err := s.SelectedSets()
	if err != nil {
		t.Fatal(err)
	}
	if d := sets[0].Desired(); sets[0].Direction != "ingress" || sets[0].Protocol != "udp" || d.Direction != plan.Ingress || d.Protocol != plan.UDP {
		t.Errorf("spec %q %q, desired %v %v; want ingress udp", sets[0].Direction, sets[0].Protocol, d.Direction, d.Protocol)
	}
}
