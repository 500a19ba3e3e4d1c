package iptables

import (
	"net/netip"
	"slices"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
)

// sortPrefixes sorts ps in plan.ComparePrefix order and drops repeats. An ipset dumps its
// members in hash order, and 100,000 IPv4 members sorted by comparison
// cost more than reading them; as 40-bit keys (address, then length)
// they sort in a few passes of a radix sort. IPv6, or a mix, is sorted by
// comparison.
func sortPrefixes(ps []netip.Prefix) []netip.Prefix {
	if len(ps) < 256 || !all4(ps) {
		slices.SortFunc(ps, plan.ComparePrefix)
		return slices.Compact(ps)
	}
	keys, tmp := make([]uint64, len(ps)), make([]uint64, len(ps))
	for i, p := range ps {
		a := p.Addr().As4()
		keys[i] = uint64(a[0])<<32 | uint64(a[1])<<24 | uint64(a[2])<<16 | uint64(a[3])<<8 | uint64(p.Bits())
	}
	for shift := 0; shift < 40; shift += 8 {
		var count [256]int
		for _, k := range keys {
			count[k>>shift&0xff]++
		}
		if count[keys[0]>>shift&0xff] == len(keys) {
			continue // every key has this byte
		}
		pos := 0
		for i, c := range count {
			count[i] = pos
			pos += c
		}
		for _, k := range keys {
			b := k >> shift & 0xff
			tmp[count[b]] = k
			count[b]++
		}
		keys, tmp = tmp, keys
	}
	for i, k := range keys {
		ps[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(k >> 32), byte(k >> 24), byte(k >> 16), byte(k >> 8)}), int(k&0xff))
	}
	return slices.Compact(ps)
}

func all4(ps []netip.Prefix) bool {
	for _, p := range ps {
		if !p.Addr().Is4() {
			return false
		}
	}
	return true
}
