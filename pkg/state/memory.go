package state

import (
	"cmp"
	"encoding/binary"
	"net/netip"
	"slices"
)

// memory is a set's addresses, compact: an IPv4 prefix and the index of
// its stamp in 12 bytes, an IPv6 one in 24 (a netip.Prefix alone takes
// 32). In order, every IPv4 prefix comes before every IPv6 one, as
// netip.Addr.Compare orders them, so each family is a slice of its own.
type memory struct {
	v4 []entry4
	v6 []entry6
}

type entry4 struct {
	addr  uint32
	stamp uint32
	bits  uint8
}

type entry6 struct {
	hi, lo uint64
	stamp  uint32
	bits   uint8
}

// entry is one address of the memory as the code reads it.
type entry struct {
	prefix netip.Prefix
	stamp  uint32
}

func (m *memory) len() int { return len(m.v4) + len(m.v6) }

// at is the i-th entry, the IPv4 ones first.
func (m *memory) at(i int) entry {
	if i < len(m.v4) {
		e := m.v4[i]
		var a [4]byte
		binary.BigEndian.PutUint32(a[:], e.addr)
		return entry{netip.PrefixFrom(netip.AddrFrom4(a), int(e.bits)), e.stamp}
	}
	e := m.v6[i-len(m.v4)]
	var a [16]byte
	binary.BigEndian.PutUint64(a[:8], e.hi)
	binary.BigEndian.PutUint64(a[8:], e.lo)
	return entry{netip.PrefixFrom(netip.AddrFrom16(a), int(e.bits)), e.stamp}
}

// push appends p, a valid prefix, with its stamp; an invalid prefix is
// not remembered (it could not be written back).
func (m *memory) push(p netip.Prefix, stamp uint32) {
	switch a := p.Addr(); {
	case !p.IsValid():
	case a.Is4():
		b := a.As4()
		m.v4 = append(m.v4, entry4{addr: binary.BigEndian.Uint32(b[:]), stamp: stamp, bits: uint8(p.Bits())})
	default:
		b := a.As16()
		m.v6 = append(m.v6, entry6{hi: binary.BigEndian.Uint64(b[:8]), lo: binary.BigEndian.Uint64(b[8:]), stamp: stamp, bits: uint8(p.Bits())})
	}
}

// setStamp gives every entry the stamp s.
func (m *memory) setStamp(s uint32) {
	for i := range m.v4 {
		m.v4[i].stamp = s
	}
	for i := range m.v6 {
		m.v6[i].stamp = s
	}
}

// reuse is an empty memory over m's arrays, for a merge that writes each
// entry at or before where it read it.
func (m *memory) reuse() memory { return memory{m.v4[:0], m.v6[:0]} }

func compare4(a, b entry4) int {
	return cmp.Or(cmp.Compare(a.addr, b.addr), cmp.Compare(a.bits, b.bits))
}

func compare6(a, b entry6) int {
	return cmp.Or(cmp.Compare(a.hi, b.hi), cmp.Compare(a.lo, b.lo), cmp.Compare(a.bits, b.bits))
}

func (m *memory) sorted() bool {
	return slices.IsSortedFunc(m.v4, compare4) && slices.IsSortedFunc(m.v6, compare6)
}

// latest sorts m (stably) by prefix and keeps, of each prefix, the first
// entry whose stamp is the latest by later.
func (m *memory) latest(later func(a, b uint32) bool) {
	if !slices.IsSortedFunc(m.v4, compare4) {
		slices.SortStableFunc(m.v4, compare4)
	}
	if !slices.IsSortedFunc(m.v6, compare6) {
		slices.SortStableFunc(m.v6, compare6)
	}
	m.v4 = dedupe(m.v4, compare4, func(e entry4) uint32 { return e.stamp }, later)
	m.v6 = dedupe(m.v6, compare6, func(e entry6) uint32 { return e.stamp }, later)
}

func dedupe[E any](es []E, compare func(a, b E) int, stamp func(E) uint32, later func(a, b uint32) bool) []E {
	out := es[:0]
	for _, e := range es {
		if n := len(out); n > 0 && compare(out[n-1], e) == 0 {
			if later(stamp(e), stamp(out[n-1])) {
				out[n-1] = e
			}
			continue
		}
		out = append(out, e)
	}
	return out
}
