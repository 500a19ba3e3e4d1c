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
	keys := make([]uint64, len(ps))
	for i, p := range ps {
		keys[i] = key4(p)
	}
	keys = radix40(keys, make([]uint64, len(keys)))
	for i, k := range keys {
		ps[i] = prefix4(k)
	}
	return slices.Compact(ps)
}

// key4 is an IPv4 prefix as a 40-bit key (address, then length), whose
// order is plan.ComparePrefix's.
func key4(p netip.Prefix) uint64 {
	a := p.Addr().As4()
	return uint64(a[0])<<32 | uint64(a[1])<<24 | uint64(a[2])<<16 | uint64(a[3])<<8 | uint64(p.Bits())
}

func prefix4(k uint64) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(k >> 32), byte(k >> 24), byte(k >> 16), byte(k >> 8)}), int(k&0xff))
}

// radix40 sorts 40-bit keys, tmp being scratch of their length, and
// returns whichever of the two holds them sorted.
func radix40(keys, tmp []uint64) []uint64 {
	if len(keys) == 0 {
		return keys
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
	return keys
}

func all4(ps []netip.Prefix) bool {
	for _, p := range ps {
		if !p.Addr().Is4() {
			return false
		}
	}
	return true
}
