package config

import "testing"

// A set using a preset gets the preset's limits (Google publishes /10s),
// the set's own keys win, and other sets keep the global limits.
func TestPresetLimits(t *testing.T) {
	f, err := Parse("pdsafelist.yaml", []byte(`
catalog:
  google:
    direction: egress
    ports: [443]
    sources: [{type: vendor, name: google}]
  google_v4_tight:
    direction: egress
    ports: [443]
    limits: {min_ipv4_prefix: 16}
    sources: [{type: vendor, name: google}, {type: static, prefixes: [193.0.2.1]}]
  stripe:
    direction: ingress
    ports: [443]
    sources: [{type: vendor, name: stripe, list: webhooks}]
  mine:
    direction: ingress
    ports: [443]
    static: [193.0.2.1]
`))
	if err != nil {
		t.Fatal(err)
	}
	s := Defaults().Apply(f)
	for set, want := range map[string][2]int{"google": {10, 28}, "google_v4_tight": {16, 28}, "stripe": {24, 48}, "mine": {24, 48}} {
		got := s.Limits.For(set)
		if got.MinIPv4Bits != want[0] || got.MinIPv6Bits != want[1] {
			t.Errorf("%s: /%d /%d, want /%d /%d", set, got.MinIPv4Bits, got.MinIPv6Bits, want[0], want[1])
		}
	}
}
