package resolution

import (
	"net/netip"
	"time"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/state"
)

// RetainPolicy is how long remembered addresses stay and which of them are
// still acceptable.
type RetainPolicy struct {
	// Grace is the least time an address stays after it was last seen.
	Grace time.Duration
	// MaxTTL caps the TTL used for retention, so one poisoned answer
	// cannot pin an address for decades; zero means state.DefaultMaxTTL.
	MaxTTL time.Duration
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
	w := state.Window{Grace: pol.Grace, MaxTTL: pol.MaxTTL}
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
		n := 0
		for _, src := range r.Sources {
			n += len(src.Addresses)
		}
		seen := make([]state.Seen, 0, n)
		for _, src := range r.Sources {
			for _, a := range src.Addresses {
				seen = append(seen, state.Seen{Prefix: a.Prefix, TTL: a.TTL})
			}
		}
		// What the sinks hold stands in only for a set with no memory;
		// checking a million held prefixes otherwise is wasted.
		var h []netip.Prefix
		if !st.Remembers(name) {
			h = pol.allowed(name, held[name])
		}
		retained := pol.allowed(name, st.Observe(name, seen, h, now, w))
		if len(retained) == 0 {
			continue
		}
		merged, err := plan.Aggregate(append(append([]netip.Prefix(nil), r.Desired.Prefixes...), retained...))
		if err != nil {
			continue // unreachable: every prefix here is valid
		}
		r.Desired.Prefixes = merged
		r.Retained = retained
	}
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
