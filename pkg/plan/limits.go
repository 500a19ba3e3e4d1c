package plan

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sort"

	"go4.org/netipx"
)

// Limits bound what a source may ask us to open.
type Limits struct {
	// MinIPv4Bits and MinIPv6Bits reject broad prefixes: a hijacked list
	// answering 0.0.0.0/0 must never open the firewall.
	MinIPv4Bits int `yaml:"min_ipv4_prefix" json:"min_ipv4_prefix"`
	MinIPv6Bits int `yaml:"min_ipv6_prefix" json:"min_ipv6_prefix"`
	// Sets holds the limits of the sets that set their own: a vendor list
	// publishes whole networks, and loosening the global limits for it
	// would loosen them for every set.
	Sets map[string]Limits `yaml:"-" json:"-"`
}

// For returns the limits that apply to one set's prefixes.
func (l Limits) For(set string) Limits {
	if o, ok := l.Sets[set]; ok {
		return o
	}
	l.Sets = nil
	return l
}

// IsZero reports limits never set, which mean DefaultLimits.
func (l Limits) IsZero() bool { return l.MinIPv4Bits == 0 && l.MinIPv6Bits == 0 && l.Sets == nil }

// DefaultLimits are deliberately tight: PagerDuty publishes single hosts.
var DefaultLimits = Limits{MinIPv4Bits: 24, MinIPv6Bits: 48}

// Validate reports limits that make no sense.
func (l Limits) Validate() error {
	if l.MinIPv4Bits < 1 || l.MinIPv4Bits > 32 {
		return fmt.Errorf("min_ipv4_prefix %d: want 1..32", l.MinIPv4Bits)
	}
	if l.MinIPv6Bits < 1 || l.MinIPv6Bits > 128 {
		return fmt.Errorf("min_ipv6_prefix %d: want 1..128", l.MinIPv6Bits)
	}
	return nil
}

type special struct {
	prefix netip.Prefix
	name   string // as the registry writes it
	rfc    string
	why    string
}

const (
	notGlobal = "not globally reachable"
	embeds    = "embeds another address"
)

func sp(prefix, name, rfc, why string) special {
	return special{netip.MustParsePrefix(prefix), name, rfc, why}
}

// refused lists what is never a vendor's public address: every entry of the
// IANA IPv4 and IPv6 Special-Purpose Address Registries whose "Globally
// Reachable" is False or N/A, plus multicast and the blocks that embed
// another address (6to4, Teredo, NAT64), which could wrap a private one. A
// nested entry comes before the block holding it, so a reason names the
// narrowest entry.
//
// Refused whole although the registry marks entries inside them globally
// reachable: 192.0.0.0/24 (192.0.0.9 and .10, PCP and TURN anycast),
// 192.88.99.0/24 (192.88.99.2, 6a44 relay anycast) and 2001::/23 (protocol
// anycast, AMT, AS112, ORCHIDv2, DETs). They are protocol services and
// identifiers, never a vendor's host. Globally reachable top-level entries
// (AS112-v4, AMT, Direct Delegation AS112) are not refused.
var refused = []special{
	sp("0.0.0.0/32", `"This host on this network"`, "RFC 1122", notGlobal),
	sp("0.0.0.0/8", `"This network"`, "RFC 791", notGlobal),
	sp("10.0.0.0/8", "Private-Use", "RFC 1918", notGlobal),
	sp("100.64.0.0/10", "Shared Address Space", "RFC 6598", notGlobal),
	sp("127.0.0.0/8", "Loopback", "RFC 1122", notGlobal),
	sp("169.254.0.0/16", "Link Local", "RFC 3927", notGlobal),
	sp("172.16.0.0/12", "Private-Use", "RFC 1918", notGlobal),
	sp("192.0.0.0/29", "IPv4 Service Continuity Prefix", "RFC 7335", notGlobal),
	sp("192.0.0.8/32", "IPv4 dummy address", "RFC 7600", notGlobal),
	sp("192.0.0.9/32", "Port Control Protocol Anycast", "RFC 7723", "protocol service inside IETF Protocol Assignments 192.0.0.0/24"),
	sp("192.0.0.10/32", "Traversal Using Relays around NAT Anycast", "RFC 8155", "protocol service inside IETF Protocol Assignments 192.0.0.0/24"),
	sp("192.0.0.170/32", "NAT64/DNS64 Discovery", "RFC 7050", notGlobal),
	sp("192.0.0.171/32", "NAT64/DNS64 Discovery", "RFC 7050", notGlobal),
	sp("192.0.0.0/24", "IETF Protocol Assignments", "RFC 6890", notGlobal),
	sp("192.0.2.0/24", "Documentation (TEST-NET-1)", "RFC 5737", notGlobal),
	sp("192.88.99.2/32", "6a44-relay anycast address", "RFC 6751", "protocol service inside Deprecated (6to4 Relay Anycast) 192.88.99.0/24"),
	sp("192.88.99.0/24", "Deprecated (6to4 Relay Anycast)", "RFC 7526", notGlobal),
	sp("192.168.0.0/16", "Private-Use", "RFC 1918", notGlobal),
	sp("198.18.0.0/15", "Benchmarking", "RFC 2544", notGlobal),
	sp("198.51.100.0/24", "Documentation (TEST-NET-2)", "RFC 5737", notGlobal),
	sp("203.0.113.0/24", "Documentation (TEST-NET-3)", "RFC 5737", notGlobal),
	sp("224.0.0.0/4", "Multicast", "RFC 5771", "multicast"),
	sp("255.255.255.255/32", "Limited Broadcast", "RFC 919", notGlobal),
	sp("240.0.0.0/4", "Reserved", "RFC 1112", notGlobal),

	sp("::1/128", "Loopback Address", "RFC 4291", notGlobal),
	sp("::/128", "Unspecified Address", "RFC 4291", notGlobal),
	sp("::ffff:0:0/96", "IPv4-mapped Address", "RFC 4291", notGlobal),
	sp("64:ff9b::/96", "IPv4-IPv6 Translat.", "RFC 6052", embeds),
	sp("64:ff9b:1::/48", "IPv4-IPv6 Translat.", "RFC 8215", notGlobal),
	sp("100::/64", "Discard-Only Address Block", "RFC 6666", notGlobal),
	sp("100:0:0:1::/64", "Dummy IPv6 Prefix", "RFC 9780", notGlobal),
	sp("2001::/32", "TEREDO", "RFC 4380", embeds),
	sp("2001:1::1/128", "Port Control Protocol Anycast", "RFC 7723", "protocol service inside IETF Protocol Assignments 2001::/23"),
	sp("2001:1::2/128", "Traversal Using Relays around NAT Anycast", "RFC 8155", "protocol service inside IETF Protocol Assignments 2001::/23"),
	sp("2001:1::3/128", "DNS-SD Service Registration Protocol Anycast Address", "RFC 9665", "protocol service inside IETF Protocol Assignments 2001::/23"),
	sp("2001:2::/48", "Benchmarking", "RFC 5180", notGlobal),
	sp("2001:3::/32", "AMT", "RFC 7450", "protocol service inside IETF Protocol Assignments 2001::/23"),
	sp("2001:4:112::/48", "AS112-v6", "RFC 7535", "protocol service inside IETF Protocol Assignments 2001::/23"),
	sp("2001:10::/28", "Deprecated (previously ORCHID)", "RFC 4843", notGlobal),
	sp("2001:20::/28", "ORCHIDv2", "RFC 7343", "protocol service inside IETF Protocol Assignments 2001::/23"),
	sp("2001:30::/28", "Drone Remote ID Protocol Entity Tags (DETs) Prefix", "RFC 9374", "protocol service inside IETF Protocol Assignments 2001::/23"),
	sp("2001::/23", "IETF Protocol Assignments", "RFC 2928", notGlobal),
	sp("2001:db8::/32", "Documentation", "RFC 3849", notGlobal),
	sp("2002::/16", "6to4", "RFC 3056", embeds),
	sp("3fff::/20", "Documentation", "RFC 9637", notGlobal),
	sp("5f00::/16", "Segment Routing (SRv6) SIDs", "RFC 9602", notGlobal),
	sp("fc00::/7", "Unique-Local", "RFC 4193", notGlobal),
	sp("fe80::/10", "Link-Local Unicast", "RFC 4291", notGlobal),
	sp("ff00::/8", "Multicast", "RFC 4291", "multicast"),
}

// refusedRanges is the union of the table as sorted, disjoint ranges: a
// binary search clears an ordinary address, and only a refused one walks
// the table for its reason.
var refusedRanges = func() []netipx.IPRange {
	var b netipx.IPSetBuilder
	for _, s := range refused {
		b.AddPrefix(s.prefix)
	}
	set, err := b.IPSet()
	if err != nil {
		panic(err)
	}
	return set.Ranges()
}()

// refusedV4 is the IPv4 part of refusedRanges as integers, first and last
// address: a list of a million IPv4 addresses is cleared with a few
// integer compares each.
var refusedV4 = func() (out [][2]uint32) {
	for _, r := range refusedRanges {
		if r.From().Is4() {
			out = append(out, [2]uint32{v4(r.From()), v4(r.To())})
		}
	}
	return out
}()

func v4(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

func isRefused(p netip.Prefix) bool {
	if p.Addr().Is4() {
		host := uint32(1<<(32-p.Bits()) - 1) // p.Bits() is 0..32
		from := v4(p.Addr()) &^ host
		to := from | host
		// The first range not wholly before p, then whether it starts
		// before p ends.
		lo, hi := 0, len(refusedV4)
		for lo < hi {
			m := int(uint(lo+hi) >> 1)
			if refusedV4[m][1] < from {
				lo = m + 1
			} else {
				hi = m
			}
		}
		return lo < len(refusedV4) && refusedV4[lo][0] <= to
	}
	r := netipx.RangeOfPrefix(p)
	i := sort.Search(len(refusedRanges), func(i int) bool { return refusedRanges[i].To().Compare(r.From()) >= 0 })
	return i < len(refusedRanges) && refusedRanges[i].From().Compare(r.To()) <= 0
}

// refusal names the refused block holding p (inside), or else, for a
// prefix wider than the blocks it holds, how many it holds and the widest:
// a broad prefix cannot smuggle a refused range in.
func refusal(p netip.Prefix) (why string, inside, ok bool) {
	if !isRefused(p) {
		return "", false, false
	}
	var widest *special
	held := 0
	for i := range refused {
		s := &refused[i]
		if !s.prefix.Overlaps(p) {
			continue
		}
		// Overlapping prefixes nest: the wider one holds the other.
		if s.prefix.Bits() <= p.Bits() {
			return fmt.Sprintf("in %s %s (%s): %s", s.name, s.prefix, s.rfc, s.why), true, true
		}
		held++
		if widest == nil || s.prefix.Bits() < widest.prefix.Bits() {
			widest = s
		}
	}
	if held == 1 {
		return fmt.Sprintf("holds %s %s (%s): %s", widest.name, widest.prefix, widest.rfc, widest.why), false, true
	}
	return fmt.Sprintf("holds %d special-purpose blocks, among them %s %s (%s): %s", held, widest.name, widest.prefix, widest.rfc, widest.why), false, true
}

var globalUnicast6 = netip.MustParsePrefix("2000::/3")

// UnsafePrefixError says a source offered a prefix we refuse to open.
type UnsafePrefixError struct {
	Prefix netip.Prefix
	Reason string
}

func (e *UnsafePrefixError) Error() string {
	return fmt.Sprintf("unsafe prefix %s: %s", e.Prefix, e.Reason)
}

func (e *UnsafePrefixError) RefusedBy() Guard { return GuardUnsafePrefix }

// Check refuses prefixes that overlap a non-global or address-embedding
// block, are not IPv6 global unicast, are broader than the limits allow,
// or have host bits set (masking would widen them).
func (l Limits) Check(p netip.Prefix) error {
	if !p.IsValid() {
		return &UnsafePrefixError{Prefix: p, Reason: "invalid prefix"}
	}
	if p != p.Masked() {
		return &UnsafePrefixError{Prefix: p, Reason: fmt.Sprintf("host bits set (want %s)", p.Masked())}
	}
	return l.checkCanonical(p)
}

// checkCanonical is Check of a valid prefix without host bits: an entry
// checked for both before (validateRest) is not masked twice.
func (l Limits) checkCanonical(p netip.Prefix) error {
	if p.Bits() == 0 {
		family := map[bool]string{true: "IPv4", false: "IPv6"}[p.Addr().Is4()]
		return &UnsafePrefixError{Prefix: p, Reason: "the whole " + family + " address space (anyone)"}
	}
	// A block that holds p names it best; a width the limits refuse comes
	// before the blocks a wide p happens to hold.
	why, inside, holds := refusal(p)
	if inside {
		return &UnsafePrefixError{Prefix: p, Reason: why}
	}
	if p.Addr().Is4() {
		if p.Bits() < l.MinIPv4Bits {
			return &UnsafePrefixError{Prefix: p, Reason: fmt.Sprintf("broader than /%d (min_ipv4_prefix)", l.MinIPv4Bits)}
		}
		if holds {
			return &UnsafePrefixError{Prefix: p, Reason: why}
		}
		return nil
	}
	if !globalUnicast6.Contains(p.Addr()) || p.Bits() < globalUnicast6.Bits() {
		return &UnsafePrefixError{Prefix: p, Reason: "not IPv6 global unicast (2000::/3)"}
	}
	if p.Bits() < l.MinIPv6Bits {
		return &UnsafePrefixError{Prefix: p, Reason: fmt.Sprintf("broader than /%d (min_ipv6_prefix)", l.MinIPv6Bits)}
	}
	if holds {
		return &UnsafePrefixError{Prefix: p, Reason: why}
	}
	return nil
}
