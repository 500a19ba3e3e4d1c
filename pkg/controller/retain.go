package controller

import (
	"net/netip"
	"time"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	rs "github.com/pdsafelist/pdsafelist/pkg/resolve"
	"github.com/pdsafelist/pdsafelist/pkg/state"
)

// retention is what the run tells the retention step.
type retention struct {
	Grace, MaxTTL time.Duration
	Limits        plan.Limits
}

// retain is the one call into the retention step. It runs after every
// sink was read, so held (what our sinks hold per set) can stand in for
// the memory a lost state file took with it.
//
// MERGE POINT (branch retention): switch the body to
//
//	rs.Retain(results, st, now, rs.RetainPolicy{Grace: p.Grace, MaxTTL: p.MaxTTL}, held)
func retain(results []rs.SetResult, st *state.File, now time.Time, p retention, held map[string][]netip.Prefix) {
	_ = held
	rs.Retain(results, st, now, p.Grace, p.Limits)
}
