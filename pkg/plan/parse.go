package plan

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

var errNotPrefix = errors.New("not an IP address or CIDR")

// ParsePrefix reads an address or a CIDR as a list or a config writes it,
// the one parser every source uses. A bare address is a host prefix and an
// IPv4-mapped one is unmapped. A CIDR with host bits set
// (44.242.69.192/24) is refused rather than masked: it is almost always a
// typo, and masking would open 256 addresses where one was meant.
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, errNotPrefix
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, errNotPrefix
	}
	if p.Addr().Is4In6() {
		if p.Bits() < 96 {
			return netip.Prefix{}, fmt.Errorf("IPv4-mapped prefix shorter than /96")
		}
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, fmt.Errorf("host bits set: want %s, or %s for the one address", m, netip.PrefixFrom(p.Addr(), p.Addr().BitLen()))
	}
	return p, nil
}
