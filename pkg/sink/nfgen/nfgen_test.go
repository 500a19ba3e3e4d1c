package nfgen

import (
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pdsafelist/pdsafelist/pkg/testutil"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/netns"
)

// The generation moves with an nft change and with an iptables-nft one,
// stands still across reads, and differs by namespace.
func TestGenerationMovesWithEveryChange(t *testing.T) {
	testutil.Integration(t, true, "nft", "iptables-nft", "ip")
	p := netns.New(t)
	conn, err := Dial(p.Server)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	read := func() Identity {
		t.Helper()
		id, err := Read(conn)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	run := func(argv ...string) {
		t.Helper()
		if out, err := p.Exec(p.Server, argv...); err != nil {
			t.Fatalf("%v: %v: %s", argv, err, out)
		}
	}
	a := read()
	run("iptables-nft", "-S")
	if b := read(); b != a {
		t.Fatalf("a read moved the generation: %+v -> %+v", a, b)
	}
	run("nft", "add", "table", "inet", "other")
	b := read()
	if b.Gen == a.Gen || b.Boot != a.Boot || b.NetNS != a.NetNS {
		t.Fatalf("nft add table: %+v -> %+v, want only the generation moved", a, b)
	}
	run("iptables-nft", "-N", "PDSL-TEST")
	c := read()
	if c.Gen == b.Gen {
		t.Fatalf("iptables -N left the generation at %d", c.Gen)
	}
	own, err := Dial("")
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	if id, err := Read(own); err != nil || id.NetNS == c.NetNS {
		t.Fatalf("our namespace read %+v, %v; the test namespace is %d", id, err, c.NetNS)
	}

	for _, tc := range []struct {
		family uint8
		chain  string
		want   bool
	}{
		{unix.NFPROTO_IPV4, "PDSL-TEST", true},
		{unix.NFPROTO_IPV6, "PDSL-TEST", false},
		{unix.NFPROTO_IPV4, "OTHER", false},
	} {
		got, err := HasChain(conn, tc.family, "filter", tc.chain)
		if err != nil || got != tc.want {
			t.Errorf("HasChain(%d, filter, %s) = %v, %v; want %v", tc.family, tc.chain, got, err, tc.want)
		}
	}
}
