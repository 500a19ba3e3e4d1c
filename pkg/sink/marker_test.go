package sink

import "testing"

func TestMarkerRoundTrip(t *testing.T) {
	tests := []struct {
		owner, desc string
		set         string
		ok          bool
	}{
		{"", "pdsafelist:webhooks", "webhooks", true},
		{"", "pdsafelist:team:webhooks", "", false},
		{"team", "pdsafelist:team:webhooks", "webhooks", true},
		{"team", "pdsafelist:webhooks", "", false},
		{"team", "pdsafelist:other:webhooks", "", false},
		{"", "pdsafelist:", "", false},
		{"", "pdsafelist:enforce extra", "", false},
		{"", "allow pagerduty", "", false},
	}
	for _, tt := range tests {
		set, ok := ParseMarker(tt.owner, tt.desc)
		if set != tt.set || ok != tt.ok {
			t.Errorf("ParseMarker(%q, %q) = %q, %v; want %q, %v", tt.owner, tt.desc, set, ok, tt.set, tt.ok)
		}
	}
	for _, owner := range []string{"", "team"} {
		if set, ok := ParseMarker(owner, Marker(owner, "api")); !ok || set != "api" {
			t.Errorf("owner %q: marker does not round-trip: %q %v", owner, set, ok)
		}
	}
}
