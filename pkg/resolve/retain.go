package resolve

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

// Retain folds the state's memory into fresh results: a set that answered
// keeps addresses seen within max(TTL, grace), and a frozen set is marked
// stale since its first failure. held[set] is what the sinks hold under our
// ownership for that set. It updates st in memory only.
func Retain(results []SetResult, st *state.File, now time.Time, pol RetainPolicy, held map[string][]netip.Prefix) {
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
		for _, p := range st.Observe(r.Spec.Name, seen, now, pol.Grace) {
			// Limits may have tightened since the address was seen.
			if pol.Limits.Check(p) == nil {
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
