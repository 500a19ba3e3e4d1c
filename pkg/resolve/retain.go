package resolve

import (
	"net/netip"
	"time"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/state"
)

// Retain folds the state's memory into fresh results: a set that answered
// keeps addresses seen within max(TTL, grace), and a frozen set is marked
// stale since its first failure. It updates st in memory only.
func Retain(results []SetResult, st *state.File, now time.Time, grace time.Duration, limits plan.Limits) {
	for i := range results {
		r := &results[i]
		if r.Desired.Frozen {
			r.StaleSince = st.MarkStale(r.Spec.Name, now)
			continue
		}
		var seen []state.Seen
		for _, src := range r.Sources {
			for _, a := range src.Addresses {
				seen = append(seen, state.Seen{Prefix: a.Prefix, TTL: a.TTL})
			}
		}
		var retained []netip.Prefix
		for _, p := range st.Observe(r.Spec.Name, seen, now, grace) {
			// Limits may have tightened since the address was seen.
			if limits.Check(p) == nil {
				retained = append(retained, p)
			}
		}
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
