package state

import (
	"bytes"
	"net/netip"
	"testing"
)

// FuzzLoad: a state file and clock of any bytes load without a panic, every
// accepted prefix is valid and canonical, and what loads saves to bytes
// that load back to the same bytes.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(`{"format_version":1,"sets":{"events":{"addresses":[{"prefix":"193.0.2.1/32","first_seen":"2026-11-22T11:00:00Z","last_seen":"2026-11-22T12:00:00.5+01:00","ttl_seconds":30}],"last_success":"2026-11-22T12:00:00Z"},"api":{"addresses":[],"stale_since":"2026-11-22T11:00:00Z"}},"open_alerts":["source_failed"]}`), []byte(nil))
	f.Add([]byte(`{"format_version":1,"sets":{"events":{"addresses":[{"prefix":"193.0.2.5/24","first_seen":"1960-01-01T00:00:00Z","last_seen":"0001-01-01T00:00:00Z"}]}}}`), []byte(nil))
	f.Add([]byte(`{"format_version":2,"sets":{"events":{"stale_since":1764000000,"groups":[{"first":1764000000,"ttl":30,"prefixes":"193.0.2.1 193.0.2.2 2001:db9::/48 ::ffff:1.2.3.4"},{"first":1763990000,"last":1763999000,"prefixes":"203.1.113.0/24"}]}}}`), []byte(`{"last_success":{"events":1764000100}}`))
	f.Add([]byte(`{"format_version":2,"sets":{"events":{"groups":[{"first":1,"prefixes":"193.0.2.1 193.0.2.1  193.0.2.1/32"}]}}}`), []byte(`{"last_success":{"events":-5}}`))
	f.Add([]byte(`{"format_version":2,"sets":{"a":{"groups":[{"first":1,"prefixes":"fe80::1%eth0"}]}}}`), []byte(`nonsense`))
	f.Add([]byte(`{"format_version":7}`), []byte(nil))
	f.Add([]byte("\x00\x01"), []byte("\x00"))
	f.Fuzz(func(t *testing.T, data, clock []byte) {
		st, err := decode(data, clock)
		if err != nil {
			return
		}
		for name, s := range st.Sets {
			if s == nil {
				t.Fatalf("set %s: nil", name)
			}
			for _, a := range s.Addresses() {
				if !a.Prefix.IsValid() || a.Prefix != a.Prefix.Masked() || a.Prefix.Addr().Zone() != "" {
					t.Fatalf("set %s: accepted %v", name, a.Prefix)
				}
				if a.TTLSeconds < 0 || a.TTLSeconds > maxTTL {
					t.Fatalf("set %s: ttl %d", name, a.TTLSeconds)
				}
			}
		}
		d1, c1, err := st.encode()
		if err != nil {
			t.Fatalf("encode: %v", err)
		}
		again, err := decode(d1, c1)
		if err != nil {
			t.Fatalf("saved state does not load: %v\n%s", err, d1)
		}
		d2, c2, err := again.encode()
		if err != nil {
			t.Fatalf("encode: %v", err)
		}
		if !bytes.Equal(d1, d2) || !bytes.Equal(c1, c2) {
			t.Fatalf("not stable:\n%s%s\nthen:\n%s%s", d1, c1, d2, c2)
		}
	})
}

// FuzzParseIPv4: the fast path accepts only what netip.ParseAddr accepts
// as IPv4, with the same address.
func FuzzParseIPv4(f *testing.F) {
	for _, s := range []string{"1.2.3.4", "01.2.3.4", "255.255.255.255", "256.0.0.1", "1.2.3", "1.2.3.4.", "0.0.0.0", "1.2.3.04", "1..2.3", "1.2.3.4/32", "::1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := parseIPv4([]byte(s))
		want, err := netip.ParseAddr(s)
		if ok && (err != nil || !want.Is4() || got != want) {
			t.Fatalf("%q: fast %v, netip %v %v", s, got, want, err)
		}
		if !ok && err == nil && want.Is4() {
			t.Fatalf("%q: fast path refused what netip reads as %v", s, want)
		}
	})
}
