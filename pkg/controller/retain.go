package controller

import (
	"net/netip"
	"time"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	rs "github.com/pdsafelist/pdsafelist/pkg/resolution"
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
func retain(results []rs.SetResult, st *state.File, now time.Time, p retention, held map[string][]netip.Prefix) {
	rs.Retain(results, st, now, rs.RetainPolicy{Grace: p.Grace, MaxTTL: p.MaxTTL, Limits: p.Limits}, held)
}
