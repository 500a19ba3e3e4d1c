package netns

import (
	"net/netip"
	"os/exec"
	"strings"
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

// A command ExecIn starts sees the namespace's links, as one started by
// ip netns exec does, and the caller's threads stay where they were.
func TestExecInRunsInTheNamespace(t *testing.T) {
	testutil.Integration(t, true, "ip")
	p := New(t)
	want := Server4.String() + "/24"
	for i := range 3 {
		out, err := p.ExecIn(p.Server, "ip", "-o", "addr", "show")
		if err != nil {
			t.Fatalf("ExecIn: %v: %s", err, out)
		}
		if !strings.Contains(string(out), want) {
			t.Fatalf("run %d: ip addr in %s lacks %s:\n%s", i, p.Server, want, out)
		}
	}
	out, err := exec.Command("ip", "-o", "addr", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("ip addr: %v: %s", err, out)
	}
	if strings.Contains(string(out), want) {
		t.Fatalf("the test's own namespace holds %s after ExecIn:\n%s", want, out)
	}
}
