package resolution

import (
	"net/netip"
	"slices"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/source"
)

// union aggregates the addresses of a set's sources. Every source sorts its
// answer (source.Merge), so the lists are merged as they stand into one
// ordered stream for plan.Aggregator: a million addresses are neither
// copied into one slice nor sorted a second time. A list out of order is
// sorted in a copy first, so the result never depends on that promise.
func union(lists [][]source.Address) ([]netip.Prefix, error) {
	n := 0
	heads := make([][]source.Address, 0, len(lists))
	for _, l := range lists {
		n += len(l)
		if !slices.IsSortedFunc(l, byPrefix) {
			l = slices.Clone(l)
			slices.SortFunc(l, byPrefix)
		}
		if len(l) > 0 {
			heads = append(heads, l)
		}
	}
	agg := plan.NewAggregator(n)
	// heads is a min-heap of the lists' remaining parts, ordered by their
	// first prefix.
	h := listHeap(heads)
	for i := len(h)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
	for len(h) > 0 {
		if err := agg.Add(h[0][0].Prefix); err != nil {
			return nil, err
		}
		if h[0] = h[0][1:]; len(h[0]) == 0 {
			last := len(h) - 1
			h[0] = h[last]
			h = h[:last]
		}
		h.down(0)
	}
	return agg.Prefixes(), nil
}

func byPrefix(a, b source.Address) int { return plan.ComparePrefix(a.Prefix, b.Prefix) }

type listHeap [][]source.Address

func (h listHeap) less(i, j int) bool { return plan.ComparePrefix(h[i][0].Prefix, h[j][0].Prefix) < 0 }

func (h listHeap) down(i int) {
	for {
		min, l, r := i, 2*i+1, 2*i+2
		if l < len(h) && h.less(l, min) {
			min = l
		}
		if r < len(h) && h.less(r, min) {
			min = r
		}
		if min == i {
			return
		}
		h[i], h[min] = h[min], h[i]
		i = min
	}
}
