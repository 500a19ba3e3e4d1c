// Package static is a source of CIDRs written in the config.
package static

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/pdsafelist/pdsafelist/pkg/source"
)

type static struct {
	name    string
	entries []string
}

// New returns a source for CIDRs or addresses given inline. Bad entries
// fail the source when it resolves, like any other source.
func New(name string, entries []string) source.Source {
	return &static{name: name, entries: entries}
}

func (s *static) Kind() source.Kind { return source.KindStatic }
func (s *static) Name() string      { return s.name }

func (s *static) Resolve(context.Context) source.Result {
	res := source.Result{Kind: source.KindStatic, Name: s.name}
	addrs := make([]source.Address, 0, len(s.entries))
	for i, e := range s.entries {
		p, err := ParsePrefix(e)
		if err != nil {
			res.Err = fmt.Errorf("static %s: entry %d %q: %w", s.name, i+1, e, err)
			return res
		}
		addrs = append(addrs, source.Address{Prefix: p})
	}
	res.Addresses = source.Merge(addrs)
	return res
}

// ParsePrefix accepts an address or a CIDR and returns it canonical.
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("not an IP address or CIDR")
		}
		if p.Addr().Is4In6() {
			if p.Bits() < 96 {
				return netip.Prefix{}, fmt.Errorf("IPv4-mapped prefix shorter than /96")
			}
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("not an IP address or CIDR")
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}
