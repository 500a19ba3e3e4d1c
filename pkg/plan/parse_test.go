package plan

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParsePrefix(t *testing.T) {
	for in, want := range map[string]string{
		"44.242.69.192":    "44.242.69.192/32",
		" 44.242.69.192 ":  "44.242.69.192/32",
		"44.242.69.0/24":   "44.242.69.0/24",
		"44.242.69.192/32": "44.242.69.192/32",
		"2001:db9::1":      "2001:db9::1/128",
		"2001:db9::/48":    "2001:db9::/48",
		// IPv4-mapped stays IPv6, for Limits.Check to refuse.
		"::ffff:44.242.69.1":     "::ffff:44.242.69.1/128",
		"::ffff:44.242.69.0/120": "::ffff:44.242.69.0/120",
	} {
		got, err := ParsePrefix(in)
		if err != nil || got != netip.MustParsePrefix(want) {
			t.Errorf("ParsePrefix(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for in, reason := range map[string]string{
		"44.242.69.192/24":       "host bits set: want 44.242.69.0/24, or 44.242.69.192/32 for the one address",
		"2001:db9::1/48":         "host bits set: want 2001:db9::/48, or 2001:db9::1/128 for the one address",
		"::ffff:44.242.69.1/120": "host bits set: want ::ffff:44.242.69.0/120",
		"fe80::1%eth0":           "not an IP address or CIDR",
		"44.242.69.0/33":         "not an IP address or CIDR",
		"example.com":            "not an IP address or CIDR",
		"":                       "not an IP address or CIDR",
	} {
		got, err := ParsePrefix(in)
		if err == nil || !strings.Contains(err.Error(), reason) || strings.Contains(err.Error(), "\n") {
			t.Errorf("ParsePrefix(%q) = %v, %v; want one-line error %q", in, got, err, reason)
		}
	}
}
