package plan

import (
	"fmt"
	"net/netip"
)

// Limits bound what a source may ask us to open.
type Limits struct {
	// MinIPv4Bits and MinIPv6Bits reject broad prefixes: a hijacked list
	// answering 0.0.0.0/0 must never open the firewall.
	MinIPv4Bits int `yaml:"min_ipv4_prefix" json:"min_ipv4_prefix"`
	MinIPv6Bits int `yaml:"min_ipv6_prefix" json:"min_ipv6_prefix"`
}

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

type forbidden struct {
	prefix netip.Prefix
	why    string
}

// Ranges that are never a vendor's public address. A prefix overlapping any
// of them is refused, so a broad prefix cannot smuggle one in.
var forbiddenRanges = []forbidden{
	{netip.MustParsePrefix("0.0.0.0/8"), "unspecified (0.0.0.0/8)"},
	{netip.MustParsePrefix("10.0.0.0/8"), "private (RFC 1918)"},
	{netip.MustParsePrefix("100.64.0.0/10"), "shared address space (CGNAT, RFC 6598)"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local"},
	{netip.MustParsePrefix("172.16.0.0/12"), "private (RFC 1918)"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private (RFC 1918)"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved or broadcast"},
	{netip.MustParsePrefix("::/128"), "unspecified"},
	{netip.MustParsePrefix("::1/128"), "loopback"},
	{netip.MustParsePrefix("::ffff:0:0/96"), "IPv4-mapped"},
	{netip.MustParsePrefix("fc00::/7"), "unique local (ULA)"},
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
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

// Check refuses prefixes that are not global unicast, are private, or are
// broader than the limits allow.
func (l Limits) Check(p netip.Prefix) error {
	if !p.IsValid() {
		return &UnsafePrefixError{Prefix: p, Reason: "invalid prefix"}
	}
	p = p.Masked()
	for _, f := range forbiddenRanges {
		if f.prefix.Overlaps(p) {
			return &UnsafePrefixError{Prefix: p, Reason: f.why}
		}
	}
	if p.Addr().Is4() {
		if p.Bits() < l.MinIPv4Bits {
			return &UnsafePrefixError{Prefix: p, Reason: fmt.Sprintf("broader than /%d (min_ipv4_prefix)", l.MinIPv4Bits)}
		}
		return nil
	}
	if !globalUnicast6.Contains(p.Addr()) || p.Bits() < globalUnicast6.Bits() {
		return &UnsafePrefixError{Prefix: p, Reason: "not IPv6 global unicast (2000::/3)"}
	}
	if p.Bits() < l.MinIPv6Bits {
		return &UnsafePrefixError{Prefix: p, Reason: fmt.Sprintf("broader than /%d (min_ipv6_prefix)", l.MinIPv6Bits)}
	}
	return nil
}
