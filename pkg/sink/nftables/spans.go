package nftables

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"iter"
	"math"
	"net/netip"
	"slices"

	"go4.org/netipx"
)

// num is a set element's key as a big-endian number: an IPv4 address in
// lo, an IPv6 one across hi and lo, a port in lo. Sixteen bytes with no
// pointer: a 100,000-element set compares and sorts as integers, and the
// garbage collector never scans it.
type num struct{ hi, lo uint64 }

func (a num) compare(b num) int {
	if c := cmp.Compare(a.hi, b.hi); c != 0 {
		return c
	}
	return cmp.Compare(a.lo, b.lo)
}

// numOf reads up to 16 bytes of key as a big-endian number.
func numOf(key []byte) num {
	var b [16]byte
	copy(b[16-len(key):], key)
	return num{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

// bytes writes a as a key of n bytes (4 or 16).
func (a num) bytes(n int) []byte {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], a.hi)
	binary.BigEndian.PutUint64(b[8:], a.lo)
	return slices.Clone(b[16-n:])
}

func (a num) addr(v6 bool) netip.Addr {
	if !v6 {
		return netip.AddrFrom4([4]byte(a.bytes(4)))
	}
	return netip.AddrFrom16([16]byte(a.bytes(16)))
}

func numOfAddr(a netip.Addr) num {
	if a.Is4() {
		b := a.As4()
		return num{lo: uint64(binary.BigEndian.Uint32(b[:]))}
	}
	b := a.As16()
	return num{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

// lastNum is the last address of the family: 255.255.255.255 or ffff:…:ffff.
func lastNum(v6 bool) num {
	if v6 {
		return num{math.MaxUint64, math.MaxUint64}
	}
	return num{lo: math.MaxUint32}
}

func (a num) isMax6() bool { return a.hi == math.MaxUint64 && a.lo == math.MaxUint64 }

// next is a+1; false past the family's last address. The last IPv4
// address plus one is no IPv4 address, and is reported as none too.
func (a num) next(v6 bool) (num, bool) {
	if a == lastNum(v6) {
		return num{}, false
	}
	if a.lo == math.MaxUint64 {
		return num{a.hi + 1, 0}, true
	}
	return num{a.hi, a.lo + 1}, true
}

// prev is a-1; false at zero.
func (a num) prev() (num, bool) {
	switch {
	case a.lo != 0:
		return num{a.hi, a.lo - 1}, true
	case a.hi != 0:
		return num{a.hi - 1, math.MaxUint64}, true
	}
	return num{}, false
}

// span is a range of addresses of one family, both ends included.
type span struct{ from, to num }

func spanOfPrefix(p netip.Prefix) span {
	from := numOfAddr(p.Masked().Addr())
	host := p.Addr().BitLen() - p.Bits() // bits of the host part
	to := from
	switch {
	case host >= 128:
		to = num{math.MaxUint64, math.MaxUint64}
	case host >= 64:
		to = num{from.hi | (1<<(host-64) - 1), math.MaxUint64}
	default:
		to.lo |= 1<<host - 1
	}
	return span{from, to}
}

func (s span) compare(t span) int {
	if c := s.from.compare(t.from); c != 0 {
		return c
	}
	return s.to.compare(t.to)
}

// joins reports whether t, starting at or after s, overlaps s or follows
// it directly: auto-merge makes the two one interval.
func (s span) joins(t span) bool {
	if t.from.compare(s.to) <= 0 || s.to.isMax6() {
		return true
	}
	// s.to+1 cannot wrap here, and past the last IPv4 address it is
	// above every IPv4 address.
	n := s.to
	if n.lo == math.MaxUint64 {
		n = num{n.hi + 1, 0}
	} else {
		n.lo++
	}
	return t.from == n
}

// mergeSpans sorts ss (unless sorted) and joins overlapping and adjacent
// spans in place, as auto-merge does: maximal intervals.
func mergeSpans(ss []span) []span {
	if !slices.IsSortedFunc(ss, span.compare) {
		slices.SortFunc(ss, span.compare)
	}
	out := ss[:0]
	for _, s := range ss {
		if n := len(out); n > 0 && out[n-1].joins(s) {
			if s.to.compare(out[n-1].to) > 0 {
				out[n-1].to = s.to
			}
			continue
		}
		out = append(out, s)
	}
	return out
}

// maximalSpans reports whether sorted ss are maximal intervals: no two
// overlap or touch.
func maximalSpans(ss []span) bool {
	for i := 1; i < len(ss); i++ {
		if ss[i-1].joins(ss[i]) || ss[i].compare(ss[i-1]) < 0 {
			return false
		}
	}
	return true
}

// equalMerged reports whether the spans sorted ss hold, merged, are
// exactly merged: it merges as it compares, with no copy of ss.
func equalMerged(ss, merged []span) bool {
	i := 0
	for k := 0; k < len(ss); {
		cur := ss[k]
		for k++; k < len(ss) && cur.joins(ss[k]); k++ {
			if ss[k].to.compare(cur.to) > 0 {
				cur.to = ss[k].to
			}
		}
		if i >= len(merged) || cur != merged[i] {
			return false
		}
		i++
	}
	return i == len(merged)
}

// ipRange is s as an address range of the family.
func (s span) ipRange(v6 bool) netipx.IPRange {
	return netipx.IPRangeFrom(s.from.addr(v6), s.to.addr(v6))
}

// points are a dump's elements as they arrive, in chunks: a dump of
// unknown length grows a chunk at a time, never copying what it holds
// (a slice grown by append would allocate five times its size).
type points struct {
	chunks [][]point
	n      int
	starts int
}

const pointChunk = 4096

func (ps *points) add(p point) {
	if k := len(ps.chunks); k == 0 || len(ps.chunks[k-1]) == pointChunk {
		ps.chunks = append(ps.chunks, make([]point, 0, pointChunk))
	}
	k := len(ps.chunks) - 1
	ps.chunks[k] = append(ps.chunks[k], p)
	ps.n++
	if !p.end {
		ps.starts++
	}
}

// all yields the points in the order they came.
func (ps *points) all() iter.Seq2[int, point] {
	return func(yield func(int, point) bool) {
		i := 0
		for _, c := range ps.chunks {
			for _, p := range c {
				if !yield(i, p) {
					return
				}
				i++
			}
		}
	}
}

// at is the i-th point, in the order they came.
func (ps *points) at(i int) point { return ps.chunks[i/pointChunk][i%pointChunk] }

// spans reads the points as intervals: a start key opens one, the next
// end key closes it just before; a start with no end runs to the family's
// last address, and an end with no start (nft once wrote one at 0) is
// none. The kernel dumps an interval set from its highest key down, so
// read from the last point back they are in order and need no sort; any
// other order is sorted first.
func (ps *points) spans(v6 bool) ([]span, error) {
	if ps.n == 0 {
		return nil, nil
	}
	b := spanReader{v6: v6, out: make([]span, 0, ps.starts)}
	ok := true
	if ps.at(0).compare(ps.at(ps.n-1)) >= 0 {
		for k := len(ps.chunks) - 1; ok && k >= 0; k-- {
			c := ps.chunks[k]
			for i := len(c) - 1; ok && i >= 0; i-- {
				ok = b.next(c[i])
			}
		}
	} else {
		for k := 0; ok && k < len(ps.chunks); k++ {
			for _, p := range ps.chunks[k] {
				if ok = b.next(p); !ok {
					break
				}
			}
		}
	}
	if !ok {
		flat := make([]point, 0, ps.n)
		for _, c := range ps.chunks {
			flat = append(flat, c...)
		}
		slices.SortFunc(flat, point.compare)
		b = spanReader{v6: v6, out: b.out[:0]}
		for _, p := range flat {
			b.next(p)
		}
	}
	return b.finish()
}

// spanReader turns points in order into spans; next reports false when a
// point is out of order, and keeps the first error for finish.
type spanReader struct {
	v6     bool
	out    []span
	prev   point
	seen   bool
	open   num
	opened bool
	err    error
}

func (r *spanReader) next(p point) bool {
	if r.seen && p.compare(r.prev) < 0 {
		return false
	}
	r.prev, r.seen = p, true
	switch {
	case r.err != nil:
	case !p.end && r.opened:
		r.err = fmt.Errorf("interval from %s has no end before %s", r.open.addr(r.v6), p.a.addr(r.v6))
	case !p.end:
		r.open, r.opened = p.a, true
	case r.opened:
		last, ok := p.a.prev()
		if !ok || last.compare(r.open) < 0 {
			r.err = fmt.Errorf("empty interval at %s", r.open.addr(r.v6))
		} else {
			r.out = append(r.out, span{r.open, last})
		}
		r.opened = false
	}
	return true
}

func (r *spanReader) finish() ([]span, error) {
	if r.err != nil {
		return nil, r.err
	}
	if r.opened {
		r.out = append(r.out, span{r.open, lastNum(r.v6)})
	}
	return r.out, nil
}
