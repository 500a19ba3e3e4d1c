package plan

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
)

// Every entry of the IANA IPv4 and IPv6 Special-Purpose Address Registries
// whose "Globally Reachable" is False or N/A, with an address inside it,
// plus multicast and the blocks that embed another address. Each must be
// refused, and the reason must name the registry entry.
var registryRefused = []struct{ name, block, sample string }{
	{`"This network"`, "0.0.0.0/8", "0.1.2.3"},
	{`"This host on this network"`, "0.0.0.0/32", "0.0.0.0"},
	{"Private-Use", "10.0.0.0/8", "10.0.0.1"},
	{"Shared Address Space", "100.64.0.0/10", "100.100.1.1"},
	{"Loopback", "127.0.0.0/8", "127.0.0.1"},
	{"Link Local", "169.254.0.0/16", "169.254.169.254"},
	{"Private-Use", "172.16.0.0/12", "172.31.255.1"},
	{"IETF Protocol Assignments", "192.0.0.0/24", "192.0.0.100"},
	{"IPv4 Service Continuity Prefix", "192.0.0.0/29", "192.0.0.1"},
	{"IPv4 dummy address", "192.0.0.8/32", "192.0.0.8"},
	{"NAT64/DNS64 Discovery", "192.0.0.170/32", "192.0.0.170"},
	{"NAT64/DNS64 Discovery", "192.0.0.171/32", "192.0.0.171"},
	{"Documentation (TEST-NET-1)", "192.0.2.0/24", "192.0.2.1"},
	{"Deprecated (6to4 Relay Anycast)", "192.88.99.0/24", "192.88.99.1"},
	{"Private-Use", "192.168.0.0/16", "192.168.1.1"},
	{"Benchmarking", "198.18.0.0/15", "198.18.0.1"},
	{"Benchmarking", "198.18.0.0/15", "198.19.255.254"},
	{"Documentation (TEST-NET-2)", "198.51.100.0/24", "198.51.100.20"},
	{"Documentation (TEST-NET-3)", "203.0.113.0/24", "203.0.113.5"},
	{"Reserved", "240.0.0.0/4", "250.1.2.3"},
	{"Limited Broadcast", "255.255.255.255/32", "255.255.255.255"},
	{"Multicast", "224.0.0.0/4", "239.1.1.1"}, // IPv4 Multicast Address Space registry

	{"Loopback Address", "::1/128", "::1"},
	{"Unspecified Address", "::/128", "::"},
	{"IPv4-mapped Address", "::ffff:0:0/96", "::ffff:0a00:1"},
	{"IPv4-IPv6 Translat.", "64:ff9b:1::/48", "64:ff9b:1::a00:1"},
	{"Discard-Only Address Block", "100::/64", "100::1"},
	{"Dummy IPv6 Prefix", "100:0:0:1::/64", "100:0:0:1::1"},
	{"IETF Protocol Assignments", "2001::/23", "2001:100::1"},
	{"TEREDO", "2001::/32", "2001:0:4136:e378:8000:63bf:3fff:fdd2"},
	{"Benchmarking", "2001:2::/48", "2001:2::1"},
	{"Deprecated (previously ORCHID)", "2001:10::/28", "2001:10::1"},
	{"Documentation", "2001:db8::/32", "2001:db8::1"},
	{"6to4", "2002::/16", "2002:a00:1::1"}, // wraps 10.0.0.1
	{"Documentation", "3fff::/20", "3fff::1"},
	{"Segment Routing (SRv6) SIDs", "5f00::/16", "5f00::1"},
	{"Unique-Local", "fc00::/7", "fd00::1"},
	{"Link-Local Unicast", "fe80::/10", "fe80::1"},
	{"Multicast", "ff00::/8", "ff02::1"}, // IPv6 Multicast Address Space registry
	// Globally reachable, but embeds any IPv4 address, private ones too.
	{"IPv4-IPv6 Translat.", "64:ff9b::/96", "64:ff9b::a00:1"},
}

// Entries the registry marks globally reachable that sit inside a refused
// block. They stay refused: protocol anycast addresses and identifiers,
// never a vendor's host, and allowing holes in a block would complicate the
// one rule that matters (nothing non-global gets in).
var registryGlobalButRefused = []struct{ name, block, sample string }{
	{"Port Control Protocol Anycast", "192.0.0.9/32", "192.0.0.9"},
	{"Traversal Using Relays around NAT Anycast", "192.0.0.10/32", "192.0.0.10"},
	{"6a44-relay anycast address", "192.88.99.2/32", "192.88.99.2"},
	{"Port Control Protocol Anycast", "2001:1::1/128", "2001:1::1"},
	{"Traversal Using Relays around NAT Anycast", "2001:1::2/128", "2001:1::2"},
	{"DNS-SD Service Registration Protocol Anycast Address", "2001:1::3/128", "2001:1::3"},
	{"AMT", "2001:3::/32", "2001:3::1"},
	{"AS112-v6", "2001:4:112::/48", "2001:4:112::1"},
	{"ORCHIDv2", "2001:20::/28", "2001:20::1"},
	{"Drone Remote ID Protocol Entity Tags (DETs) Prefix", "2001:30::/28", "2001:30::1"},
}

// Top-level entries the registry marks globally reachable are ordinary
// addresses to us.
var registryGlobal = []struct{ name, block, sample string }{
	{"AS112-v4", "192.31.196.0/24", "192.31.196.1"},
	{"AMT", "192.52.193.0/24", "192.52.193.1"},
	{"Direct Delegation AS112 Service", "192.175.48.0/24", "192.175.48.1"},
	{"Direct Delegation AS112 Service", "2620:4f:8000::/48", "2620:4f:8000::1"},
}

func TestLimitsRefuseSpecialPurpose(t *testing.T) {
	check := func(name, block, sample string) {
		t.Helper()
		a := netip.MustParseAddr(sample)
		if !netip.MustParsePrefix(block).Contains(a) {
			t.Fatalf("test table: %s is not in %s", sample, block)
		}
		err := DefaultLimits.Check(netip.PrefixFrom(a, a.BitLen()))
		var ue *UnsafePrefixError
		if !errors.As(err, &ue) {
			t.Errorf("%s (%s): %s accepted or not an UnsafePrefixError: %v", name, block, sample, err)
			return
		}
		if !strings.Contains(err.Error(), name) {
			t.Errorf("%s (%s): reason %q does not name the registry entry", name, block, err)
		}
	}
	for _, tt := range registryRefused {
		check(tt.name, tt.block, tt.sample)
	}
	for _, tt := range registryGlobalButRefused {
		check(tt.name, tt.block, tt.sample)
	}
	for _, tt := range registryGlobal {
		p := netip.MustParsePrefix(tt.sample + "/" + map[bool]string{true: "32", false: "128"}[netip.MustParseAddr(tt.sample).Is4()])
		if err := DefaultLimits.Check(p); err != nil {
			t.Errorf("%s (%s) is globally reachable, refused: %v", tt.name, tt.block, err)
		}
	}
}

// A prefix overlapping a refused block is refused even when the limits
// allow its width, so a broad prefix cannot smuggle one in.
func TestLimitsRefuseOverlap(t *testing.T) {
	wide := Limits{MinIPv4Bits: 1, MinIPv6Bits: 1}
	for _, tt := range []struct{ prefix, reason string }{
		{"198.0.0.0/7", "holds 2 special-purpose blocks, among them Benchmarking 198.18.0.0/15"},
		{"192.0.0.0/23", "IETF Protocol Assignments"},
		{"203.0.0.0/16", "holds Documentation (TEST-NET-3)"},
		{"2000::/3", "special-purpose blocks, among them"},
		{"2001::/16", "holds 12 special-purpose blocks, among them IETF Protocol Assignments 2001::/23"},
		{"2001:db8::/31", "holds Documentation 2001:db8::/32"},
		{"2002:a00:1::/48", "in 6to4 2002::/16"},
		{"0.0.0.0/0", "the whole IPv4 address space"},
	} {
		err := wide.Check(netip.MustParsePrefix(tt.prefix))
		if err == nil || !strings.Contains(err.Error(), tt.reason) {
			t.Errorf("Check(%s) = %v, want a refusal naming %q", tt.prefix, err, tt.reason)
		}
	}
	// Neighbours of refused blocks stay usable.
	for _, ok := range []string{"198.17.255.0/24", "198.20.0.0/24", "192.0.1.0/24", "192.0.3.0/24", "2001:200::/32", "2003::/16", "2001:db9::/32"} {
		if err := wide.Check(netip.MustParsePrefix(ok)); err != nil {
			t.Errorf("Check(%s) = %v, want accepted", ok, err)
		}
	}
}

// The answer most worth refusing reads as what it is: "everyone", not a
// block it happens to hold (it read "overlaps Multicast 224.0.0.0/4").
func TestLimitsNameTheWholeAddressSpace(t *testing.T) {
	for _, tt := range []struct{ prefix, want string }{
		{"0.0.0.0/0", "unsafe prefix 0.0.0.0/0: the whole IPv4 address space (anyone)"},
		{"::/0", "unsafe prefix ::/0: the whole IPv6 address space (anyone)"},
		{"0.0.0.0/1", "unsafe prefix 0.0.0.0/1: broader than /24 (min_ipv4_prefix)"},
		{"10.0.0.0/8", "unsafe prefix 10.0.0.0/8: in Private-Use 10.0.0.0/8"},
	} {
		err := DefaultLimits.Check(netip.MustParsePrefix(tt.prefix))
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("Check(%s) = %v, want %q", tt.prefix, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "Multicast") {
			t.Errorf("Check(%s) = %v: names a block it merely holds", tt.prefix, err)
		}
	}
}

// Check never masks a prefix into something wider: a prefix with host bits
// set from any path (a state file, a saved plan) is refused, not widened.
func TestLimitsRefuseHostBits(t *testing.T) {
	err := DefaultLimits.Check(netip.MustParsePrefix("44.242.69.192/24"))
	var ue *UnsafePrefixError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "unsafe prefix 44.242.69.192/24: host bits set") {
		t.Errorf("Check = %v, want a host-bits refusal", err)
	}
}

// Checking 100k public addresses, as a large list costs.
func BenchmarkLimitsCheck(b *testing.B) {
	ps := make([]netip.Prefix, 100_000)
	for i := range ps {
		ps[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{44, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, p := range ps {
			if err := DefaultLimits.Check(p); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// The binary-search fast path agrees with walking the table.
func TestIsRefusedMatchesTable(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 20000 {
		var p netip.Prefix
		if rng.IntN(2) == 0 {
			p = netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(256))}), rng.IntN(33)).Masked()
		} else {
			var b [16]byte
			for i := range b {
				b[i] = byte(rng.IntN(256))
			}
			// Bias towards the small IPv6 blocks.
			copy(b[:2], [][]byte{{0x20, 0x01}, {0x20, 0x02}, {0x3f, 0xff}, {0x00, 0x64}, {0x01, 0x00}}[rng.IntN(5)])
			if rng.IntN(3) == 0 {
				b[2], b[3] = 0, byte(rng.IntN(0x40))
			}
			p = netip.PrefixFrom(netip.AddrFrom16(b), rng.IntN(129)).Masked()
		}
		assertRefusedAsTable(t, p)
	}
	// Every edge of every range, from both sides, at several lengths.
	for _, r := range refusedRanges {
		for _, a := range []netip.Addr{r.From().Prev(), r.From(), r.To(), r.To().Next()} {
			if !a.IsValid() {
				continue
			}
			for _, bits := range []int{a.BitLen(), a.BitLen() - 1, a.BitLen() - 8, a.BitLen() / 2, 1, 0} {
				assertRefusedAsTable(t, netip.PrefixFrom(a, bits).Masked())
			}
		}
	}
}

// A set's own limits apply to its entries only; read-back and saved plans
// validate through Entry.Validate, so they follow the same rule.
func TestLimitsPerSet(t *testing.T) {
	l := DefaultLimits
	l.Sets = map[string]Limits{"aws": {MinIPv4Bits: 11, MinIPv6Bits: 33}}
	wide := netip.MustParsePrefix("44.192.0.0/11")
	if err := (Entry{Set: "aws", Prefix: wide}).Validate(l); err != nil {
		t.Errorf("aws /11 refused under its own limits: %v", err)
	}
	if err := (Entry{Set: "hooks", Prefix: wide}).Validate(l); err == nil || !strings.Contains(err.Error(), "broader than /24") {
		t.Errorf("hooks /11: %v, want refused by the global /24", err)
	}
	if got := l.For("hooks"); got.MinIPv4Bits != 24 || got.Sets != nil {
		t.Errorf("For(hooks) = %+v, want the global limits alone", got)
	}
	if !(Limits{}).IsZero() || l.IsZero() {
		t.Error("IsZero")
	}
}

func assertRefusedAsTable(t *testing.T, p netip.Prefix) {
	t.Helper()
	want := false
	for _, s := range refused {
		want = want || s.prefix.Overlaps(p)
	}
	if got := isRefused(p); got != want {
		t.Fatalf("isRefused(%s) = %v, table says %v", p, got, want)
	}
}
