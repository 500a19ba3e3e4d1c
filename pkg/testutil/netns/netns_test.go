package netns

import (
	"net/netip"
	"testing"
	"time"

	"github.com/pdsafelist/pdsafelist/pkg/testutil"
)

// Without a firewall every client address reaches the server, and a port
// nobody listens on does not: the probe can tell the two apart.
func TestPairCarriesTraffic(t *testing.T) {
	testutil.Integration(t, true, "ip")
	c4, c6 := netip.MustParseAddr("193.0.2.10"), netip.MustParseAddr("2001:db9::10")
	p := New(t, c4, c6)
	p.Serve(t, 8443)
	if !p.Reaches(c4, Server4, 8443, 2*time.Second) {
		t.Error("IPv4 client did not reach the server")
	}
	if !p.Reaches(c6, Server6, 8443, 2*time.Second) {
		t.Error("IPv6 client did not reach the server")
	}
	if p.Reaches(c4, Server4, 8444, time.Second) {
		t.Error("reached a port with no listener")
	}
}
