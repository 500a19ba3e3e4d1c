package plan

import (
	"fmt"
	"strconv"
	"strings"
)

// MaxDelete refuses a plan that removes too much of what a sink holds, as
// octoDNS does: a bad answer that slips past the other guards should not
// empty a firewall.
type MaxDelete struct {
	// Percent of the owned entries (0-100); used when Count is zero.
	Percent float64
	Count   int
	// MinExisting is the size below which the guard does not apply: with
	// few entries any single change is a large share.
	MinExisting int
}

// DefaultMaxDelete matches octoDNS: 30% once 10 entries exist.
var DefaultMaxDelete = MaxDelete{Percent: 30, MinExisting: 10}

// ParseMaxDelete reads "30%" or "25".
func ParseMaxDelete(s string) (MaxDelete, error) {
	m := MaxDelete{MinExisting: DefaultMaxDelete.MinExisting}
	s = strings.TrimSpace(s)
	if pct, ok := strings.CutSuffix(s, "%"); ok {
		v, err := strconv.ParseFloat(pct, 64)
		if err != nil || v < 0 || v > 100 {
			return MaxDelete{}, fmt.Errorf("max-delete %q: want a percentage 0-100%% or a count", s)
		}
		m.Percent = v
		return m, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return MaxDelete{}, fmt.Errorf("max-delete %q: want a percentage such as 30%% or a count such as 5", s)
	}
	m.Count = n
	if n == 0 {
		// "0" means no removals at all, which a count expresses exactly.
		m.Percent = -1
	}
	return m, nil
}

func (m MaxDelete) String() string {
	if m.Count > 0 || m.Percent < 0 {
		return strconv.Itoa(m.Count)
	}
	return strconv.FormatFloat(m.Percent, 'f', -1, 64) + "%"
}

// GuardError is a plan refused by a guard. The message says what to do.
type GuardError struct {
	Guard string
	Sink  string
	Msg   string
}

func (e *GuardError) Error() string {
	return fmt.Sprintf("%s: refused by %s guard: %s", e.Sink, e.Guard, e.Msg)
}

// Check refuses p when it removes more than allowed.
func (m MaxDelete) Check(p SinkPlan) error {
	removing := len(p.Remove)
	existing := len(p.Keep) + removing
	if removing == 0 || existing < m.MinExisting {
		return nil
	}
	var over bool
	var limit string
	switch {
	case m.Count > 0 || m.Percent < 0:
		over, limit = removing > m.Count, fmt.Sprintf("%d", m.Count)
	default:
		over, limit = float64(removing)*100 > m.Percent*float64(existing), m.String()
	}
	if !over {
		return nil
	}
	return &GuardError{Guard: "max-delete", Sink: p.Sink, Msg: fmt.Sprintf(
		"plan removes %d of %d entries, more than --max-delete %s; check the sources, then re-run with --force if this is intended",
		removing, existing, limit)}
}
