package resolution

import (
	"iter"
	"net/netip"
	"slices"
	"time"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/source"
	"github.com/pdsafelist/pdsafelist/pkg/state"
)

// RetainPolicy is how long remembered addresses stay and which of them are
// still acceptable.
type RetainPolicy struct {
	// Window is how long an address stays after it was last seen: its
	// MaxTTL caps the TTL honoured, so one poisoned answer cannot pin an
	// address for decades.
	Window state.Window
	// Limits may have tightened since an address was seen.
	Limits plan.Limits
}

// Retain folds the state's memory into fresh results. held[set] is what
// the sinks hold under our ownership for that set, across sinks.
//
// A set that answered keeps the addresses it saw within
// max(min(TTL, MaxTTL), Grace); with no history in st it takes held as seen
// now, so a cold start removes nothing DNS may still serve. A frozen set is
// marked stale since its first failure and carries in LastKnown what it
// last vouched for: its memory within the window, and held. It updates st
// in memory only.
func Retain(results []SetResult, st *state.File, now time.Time, pol RetainPolicy, held map[string][]netip.Prefix) {
	w := pol.Window
	for i := range results {
		r := &results[i]
		name := r.Spec.Name
		if r.Desired.Frozen {
			r.StaleSince = st.MarkStale(name, now)
			// Nothing is planned from it, but other sets' changes must not
			// remove what it still vouches for.
			known := pol.allowed(name, append(st.Known(name, now, w), held[name]...))
			if len(known) > 0 {
				// Unreachable error: allowed refuses invalid prefixes.
				r.Desired.LastKnown, _ = plan.Aggregate(known)
			}
			continue
		}
		// A dry run that remembers nothing of the set and holds nothing
		// for it can retain nothing: no copy of the answer to learn that.
		if st.Scratch && !st.Remembers(name) && len(held[name]) == 0 {
			continue
		}
		// What the sinks hold stands in only for a set with no memory;
		// checking a million held prefixes otherwise is wasted.
		var h []netip.Prefix
		if !st.Remembers(name) {
			h = pol.allowed(name, held[name])
		}
		var observed []netip.Prefix
		if lists, n, ok := sortedLists(r.Sources); ok {
			// Merged as the state reads it: no copy of the answer.
			observed = st.ObserveSorted(name, mergedAnswer(lists), n, h, now, w)
		} else {
			observed = st.Observe(name, mergeSeen(r.Sources), h, now, w)
		}
		retained := pol.allowed(name, observed)
		if len(retained) == 0 {
			continue
		}
		// One copy of the answer with the retained appended, aggregated
		// where it lies.
		all := make([]netip.Prefix, 0, len(r.Desired.Prefixes)+len(retained))
		merged, err := plan.AggregateInPlace(append(append(all, r.Desired.Prefixes...), retained...))
		if err != nil {
			continue // unreachable: every prefix here is valid
		}
		r.Desired.Prefixes = merged
		r.Retained = retained
	}
}

// sortedLists returns the sources' lists when each is sorted by prefix
// and holds masked prefixes only, as the list and DNS sources leave them,
// and how many addresses they hold.
func sortedLists(srcs []source.Result) ([][]source.Address, int, bool) {
	lists := make([][]source.Address, 0, len(srcs))
	n := 0
	for _, src := range srcs {
		as := src.Addresses
		for i, a := range as {
			if a.Prefix != a.Prefix.Masked() || i > 0 && plan.ComparePrefix(as[i-1].Prefix, a.Prefix) > 0 {
				return nil, 0, false
			}
		}
		if len(as) > 0 {
			lists = append(lists, as)
			n += len(as)
		}
	}
	return lists, n, true
}

// mergedAnswer yields the addresses of sorted lists of masked prefixes in
// order, each prefix once with the largest TTL it came with: what
// state.ObserveSorted reads. Each range merges the lists again.
func mergedAnswer(lists [][]source.Address) iter.Seq[state.Seen] {
	return func(yield func(state.Seen) bool) {
		var cur state.Seen
		have, stopped := false, false
		mergeRuns(slices.Clone(lists), func(run []source.Address) bool {
			for _, a := range run {
				if have && a.Prefix == cur.Prefix {
					cur.TTL = max(cur.TTL, a.TTL)
					continue
				}
				if have && !yield(cur) {
					stopped = true
					return false
				}
				cur, have = state.Seen{Prefix: a.Prefix, TTL: a.TTL}, true
			}
			return true
		})
		if have && !stopped {
			yield(cur)
		}
	}
}

// mergeSeen copies the sources' addresses for the state in prefix order:
// each source's list is usually sorted, and merging them here, as they
// are copied, spares the state a second buffer of the answer's size to
// merge them in. Lists out of order still come out whole; the state sorts
// what is not in order.
func mergeSeen(srcs []source.Result) []state.Seen {
	n := 0
	for _, src := range srcs {
		n += len(src.Addresses)
	}
	seen := make([]state.Seen, 0, n)
	lists := make([][]source.Address, 0, len(srcs))
	for _, src := range srcs {
		lists = append(lists, src.Addresses)
	}
	mergeRuns(lists, func(run []source.Address) bool {
		for _, a := range run {
			seen = append(seen, state.Seen{Prefix: a.Prefix, TTL: a.TTL})
		}
		return true
	})
	return seen
}

// allowed keeps the prefixes the limits allow: they may have tightened
// since an address was seen, and what a sink holds is not trusted.
func (pol RetainPolicy) allowed(set string, ps []netip.Prefix) []netip.Prefix {
	limits := pol.Limits.For(set)
	var out []netip.Prefix
	for _, p := range ps {
		if limits.Check(p) == nil {
			out = append(out, p)
		}
	}
	return out
}
