package static

import (
	"context"
	"net/netip"
	"strings"
	"testing"
)

func TestResolve(t *testing.T) {
	r := New("catalog.hooks.static", []string{"44.242.69.192", "44.242.69.0/24", "2001:db9::/48"}).Resolve(context.Background())
	if r.Err != nil || len(r.Addresses) != 3 {
		t.Fatalf("got %v, %v", r.Addresses, r.Err)
	}
	if r.Addresses[1].Prefix != netip.MustParsePrefix("44.242.69.192/32") {
		t.Errorf("addresses %v", r.Addresses)
	}
}

// An entry with host bits set is a typo: refused with a line naming the
// source and the entry, never widened to the whole network.
func TestHostBitsRefused(t *testing.T) {
	r := New("catalog.hooks.static", []string{"193.0.2.10", "44.242.69.192/24"}).Resolve(context.Background())
	if r.Err == nil {
		t.Fatalf("accepted: %v", r.Addresses)
	}
	want := `static catalog.hooks.static: entry 2 "44.242.69.192/24": host bits set: want 44.242.69.0/24, or 44.242.69.192/32 for the one address`
	if r.Err.Error() != want {
		t.Errorf("error\n got %q\nwant %q", r.Err, want)
	}
	if len(r.Addresses) != 0 || strings.Contains(r.Err.Error(), "\n") {
		t.Errorf("failure carries addresses %v or is multi-line", r.Addresses)
	}
}
