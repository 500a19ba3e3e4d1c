package plan

import (
	"fmt"
	"net/netip"

	"go4.org/netipx"
)

// Aggregator is Aggregate's single merging pass on its own: fed prefixes in
// ComparePrefix order, it yields the fewest CIDRs covering exactly their
// union. A caller holding lists that are already sorted (every source
// sorts its answer) merges them into it without copying or sorting a
// million prefixes again.
type Aggregator struct {
	out []netip.Prefix
	cur netipx.IPRange
	// one is cur as a prefix while it is no more than the prefix that
	// started it, the common case, which needs no splitting into CIDRs.
	one netip.Prefix
}

// NewAggregator returns an aggregator whose output has room for n CIDRs.
func NewAggregator(n int) *Aggregator {
	return &Aggregator{out: make([]netip.Prefix, 0, n)}
}

// Add merges p, which must be valid, masked and not ordered before the
// prefix added last; otherwise Add refuses it, as the union would be wrong.
func (a *Aggregator) Add(p netip.Prefix) error {
	if !p.IsValid() || p != p.Masked() {
		return fmt.Errorf("aggregate: invalid prefix %v", p)
	}
	r := netipx.RangeOfPrefix(p)
	if a.cur.IsValid() {
		if r.From().Less(a.cur.From()) {
			return fmt.Errorf("aggregate: %v added after a prefix from %v", p, a.cur.From())
		}
		// Sorted by start, so r overlaps or touches cur exactly when it
		// starts no later than the address after cur. Families never
		// touch: the address after 255.255.255.255 is invalid.
		if r.From().Compare(a.cur.To()) <= 0 || r.From() == a.cur.To().Next() {
			if r.To().Compare(a.cur.To()) > 0 {
				a.cur = netipx.IPRangeFrom(a.cur.From(), r.To())
				a.one = netip.Prefix{}
			}
			return nil
		}
		a.flush()
	}
	a.cur, a.one = r, p
	return nil
}

func (a *Aggregator) flush() {
	if a.one.IsValid() {
		a.out = append(a.out, a.one)
	} else {
		a.out = a.cur.AppendPrefixes(a.out)
	}
}

// Take returns the CIDRs merged so far, which no later Add changes, and
// forgets them, so a caller writing them out as it goes holds none. The
// slice is valid until the next Add.
func (a *Aggregator) Take() []netip.Prefix {
	out := a.out
	a.out = a.out[:0]
	return out
}

// Prefixes ends the merge and returns the CIDRs, sorted.
func (a *Aggregator) Prefixes() []netip.Prefix {
	if a.cur.IsValid() {
		a.flush()
		a.cur, a.one = netipx.IPRange{}, netip.Prefix{}
	}
	return a.out
}
