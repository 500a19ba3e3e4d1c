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
	var err error
	mergeRuns(heads, func(run []source.Address) bool {
		for _, a := range run {
			if err = agg.Add(a.Prefix); err != nil {
				return false
			}
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	return agg.Prefixes(), nil
}

func byPrefix(a, b source.Address) int { return plan.ComparePrefix(a.Prefix, b.Prefix) }

// mergeRuns hands emit the lists' addresses in prefix order, a run at a
// time: the smallest list up to the next list's head, not one address per
// heap step. A list out of order comes out whole, in runs as it stands.
// emit returning false stops the merge. lists is used as the heap.
func mergeRuns(lists [][]source.Address, emit func(run []source.Address) bool) {
	h := listHeap(slices.DeleteFunc(lists, func(l []source.Address) bool { return len(l) == 0 }))
	for i := len(h)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
	for len(h) > 0 {
		l, k := h[0], len(h[0])
		if len(h) > 1 {
			next := h[1][0].Prefix
			if len(h) > 2 && plan.ComparePrefix(h[2][0].Prefix, next) < 0 {
				next = h[2][0].Prefix
			}
			k = 1
			for k < len(l) && plan.ComparePrefix(l[k].Prefix, next) <= 0 && plan.ComparePrefix(l[k-1].Prefix, l[k].Prefix) <= 0 {
				k++
			}
		}
		if !emit(l[:k]) {
			return
		}
		if l = l[k:]; len(l) == 0 {
			h[0] = h[len(h)-1]
			h = h[:len(h)-1]
		} else {
			h[0] = l
		}
		h.down(0)
	}
}

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
