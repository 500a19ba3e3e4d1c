package plan

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

var errNotPrefix = errors.New("not an IP address or CIDR")

// ParsePrefix reads an address or a CIDR as a list or a config writes it,
// the one parser every source uses. A bare address is a host prefix. An
// IPv4-mapped one (::ffff:a.b.c.d) stays IPv6, so Limits.Check refuses it
// as the IANA registry's ::ffff:0:0/96 like any other special-purpose
// block; unmapping it would open an address no list published as IPv4.
// A CIDR with host bits set
// (44.242.69.192/24) is refused rather than masked: it is almost always a
// typo, and masking would open 256 addresses where one was meant.
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, errNotPrefix
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, errNotPrefix
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, fmt.Errorf("host bits set: want %s, or %s for the one address", m, netip.PrefixFrom(p.Addr(), p.Addr().BitLen()))
	}
	return p, nil
}
