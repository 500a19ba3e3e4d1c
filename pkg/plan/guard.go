package plan

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"go4.org/netipx"
)

// MaxDelete refuses a plan that removes too much of what a sink holds, as
// octoDNS does: a bad answer that slips past the other guards should not
// empty a firewall.
type MaxDelete struct {
	// ByCount makes Count an absolute limit that applies whatever the
	// sink's size, so a count of 0 allows no removal at all.
	ByCount bool
	Count   int
	// Percent of the owned entries (0-100), when not ByCount.
	Percent float64
	// MinExisting is the size below which a percentage does not apply:
	// with few entries any single change is a large share.
	MinExisting int
}

// DefaultMaxDelete matches octoDNS: 30% once 10 entries exist.
var DefaultMaxDelete = MaxDelete{Percent: 30, MinExisting: 10}

// RunGuards are the run-level guards every sink's plan meets before anything
// is applied, dry runs and saved plans included. A new guard is its own
// type, a field here whose yaml tag is its config key (the config file
// embeds RunGuards), and one flag entry in the sync command.
type RunGuards struct {
	MaxDelete MaxDelete `yaml:"max_delete"`
}

// DefaultRunGuards are the guards of a run that sets none.
var DefaultRunGuards = RunGuards{MaxDelete: DefaultMaxDelete}

// Check runs every guard on p; the first refusal is returned.
func (g RunGuards) Check(p SinkPlan) error {
	for _, guard := range []interface{ Check(SinkPlan) error }{g.MaxDelete} {
		if err := guard.Check(p); err != nil {
			return err
		}
	}
	return nil
}

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
	m.ByCount, m.Count = true, n
	return m, nil
}

func (m MaxDelete) String() string {
	if m.ByCount {
		return strconv.Itoa(m.Count)
	}
	return strconv.FormatFloat(m.Percent, 'f', -1, 64) + "%"
}

// MarshalText and UnmarshalText make the config key and the flag read
// "30%" or "5" into the value itself, with no string in between.
func (m MaxDelete) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

func (m *MaxDelete) UnmarshalText(b []byte) error {
	v, err := ParseMaxDelete(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// Set and Type make *MaxDelete a command-line flag value.
func (m *MaxDelete) Set(s string) error { return m.UnmarshalText([]byte(s)) }
func (m *MaxDelete) Type() string       { return "limit" }

// Guard names a safety guard. The value is the metrics label
// ("max_delete"); messages show it with dashes ("max-delete").
type Guard string

// Every guard a run can report. Add a new one here and to Guards.
const (
	GuardMaxDelete     Guard = "max_delete"
	GuardMinEntries    Guard = "min_entries"
	GuardUnsafePrefix  Guard = "unsafe_prefix"
	GuardStalePlan     Guard = "stale_plan"
	GuardSavedPlan     Guard = "saved_plan"
	GuardEC2Overlap    Guard = "ec2_overlap"
	GuardEC2RuleLimit  Guard = "ec2_rule_limit"
	GuardEC2MaxEntries Guard = "ec2_max_entries"
	GuardWAFv2MaxAddrs Guard = "wafv2_max_addresses"
	GuardWAFv2SetMap   Guard = "wafv2_set_map"
	// GuardIngressAnnotation: an Ingress allow-list annotation that would
	// be empty, too long, or too large for the API server.
	GuardIngressAnnotation Guard = "ingress_annotation"
	// GuardKubeObjectSize: a Kubernetes object or its annotations past
	// what the API server and etcd accept.
	GuardKubeObjectSize Guard = "k8s_object_size"
)

// Guards lists every guard once, so metrics can report each at 0 when
// quiet and alert rules can rely on the series existing.
var Guards = []Guard{
	GuardMaxDelete, GuardMinEntries, GuardUnsafePrefix, GuardStalePlan, GuardSavedPlan,
	GuardEC2Overlap, GuardEC2RuleLimit, GuardEC2MaxEntries,
	GuardWAFv2MaxAddrs, GuardWAFv2SetMap, GuardIngressAnnotation, GuardKubeObjectSize,
}

func (g Guard) String() string { return strings.ReplaceAll(string(g), "_", "-") }

// Refusal is an error a guard raised. Exit codes, metrics and
// notifications read the guard from it through RefusedBy.
type Refusal interface {
	error
	RefusedBy() Guard
}

// RefusedBy names the guard behind err, when a guard refused.
func RefusedBy(err error) (Guard, bool) {
	var r Refusal
	if !errors.As(err, &r) {
		return "", false
	}
	return r.RefusedBy(), true
}

// GuardError is a plan refused by a guard. The message says what to do.
type GuardError struct {
	Guard Guard
	Sink  string
	Msg   string
}

func (e *GuardError) Error() string {
	return fmt.Sprintf("%s: refused by %s guard: %s", e.Sink, e.Guard, e.Msg)
}

func (e *GuardError) RefusedBy() Guard { return e.Guard }

// Check refuses p when it removes more than allowed. An owned entry counts
// as removed only when the result no longer covers it (same direction,
// protocol and port under any set, every address still allowed): new addresses that
// aggregate with held ones into a wider prefix are not a deletion. Entries
// in p.Unsafe are neither removals nor existing entries: removing a
// world-open rule is always safe.
func (m MaxDelete) Check(p SinkPlan) error {
	unsafe := make(map[Entry]bool, len(p.Unsafe))
	for _, e := range p.Unsafe {
		unsafe[e] = true
	}
	var checked []Entry
	for _, e := range p.Remove {
		if !unsafe[e] {
			checked = append(checked, e)
		}
	}
	removing, existing := 0, len(p.Keep)+len(checked)
	if len(checked) > 0 {
		// A few removals from many entries: only the result's ranges
		// that meet them can cover them (one removal from a million
		// indexed 96 MB of ranges).
		var need []Entry
		if len(checked)*galloping <= len(p.Keep)+len(p.Add) {
			need = checked
		}
		cover := newCoverage(p.Keep, p.Add, need)
		for _, e := range checked {
			if !cover.covers(e) {
				removing++
			}
		}
	}
	if removing == 0 {
		return nil
	}
	var over bool
	switch {
	case m.ByCount:
		over = removing > m.Count
	case existing < m.MinExisting:
		return nil
	default:
		over = float64(removing)*100 > m.Percent*float64(existing)
	}
	if !over {
		return nil
	}
	return &GuardError{Guard: GuardMaxDelete, Sink: p.Sink, Msg: fmt.Sprintf(
		"plan removes %d of %d entries, more than --max-delete %s; check the sources, then re-run with --force if this is intended",
		removing, existing, m)}
}

// coverage holds, for each set, direction, protocol and port, the merged
// address ranges of a result, sorted, so a prefix is looked up by binary
// search: O((n+m) log n) for n result and m removed entries.
type coverage struct {
	index  map[Entry]int
	ranges [][]netipx.IPRange
	// Entries come grouped by key, so the last key saves most map lookups.
	lastKey Entry
	last    int
}

// key ignores the set: an address that moves from one set's entry to
// another's on the same port (a relabel, a claim handed over) is still
// allowed, so it is no deletion.
func key(e Entry) Entry {
	e.Set, e.Prefix = "", netip.Prefix{}
	return e
}

func (c *coverage) slot(k Entry, add bool) int {
	if c.last >= 0 && k == c.lastKey {
		return c.last
	}
	i, ok := c.index[k]
	if !ok {
		if !add {
			return -1
		}
		i = len(c.ranges)
		c.index[k] = i
		c.ranges = append(c.ranges, nil)
	}
	c.lastKey, c.last = k, i
	return i
}

// newCoverage reads the result, keep plus add, without sorting entries.
// Both arrive sorted from Calculate, so each key's ranges are two sorted
// runs merged in one pass; a run out of order (a hand-made plan) is sorted
// first. With need, it holds only the ranges that meet an entry of need
// under its key, which are all that can cover it; covers then answers
// for need's entries only.
func newCoverage(keep, add, need []Entry) *coverage {
	c := &coverage{index: make(map[Entry]int), last: -1}
	meets := func(Entry) bool { return true }
	if need != nil {
		meets = meeting(need)
	}
	// Count first, so each run is allocated once at its size.
	var sizes [2][]int
	for n, part := range [][]Entry{keep, add} {
		for _, e := range part {
			if !meets(e) {
				continue
			}
			i := c.slot(key(e), true)
			for len(sizes[n]) <= i {
				sizes[n] = append(sizes[n], 0)
			}
			sizes[n][i]++
		}
	}
	var runs [2][][]netipx.IPRange
	for n, part := range [][]Entry{keep, add} {
		runs[n] = make([][]netipx.IPRange, len(sizes[n]))
		for i, size := range sizes[n] {
			runs[n][i] = make([]netipx.IPRange, 0, size)
		}
		for _, e := range part {
			if !meets(e) {
				continue
			}
			i := c.slot(key(e), false)
			runs[n][i] = append(runs[n][i], netipx.RangeOfPrefix(e.Prefix.Masked()))
		}
	}
	byFrom := func(a, b netipx.IPRange) int { return a.From().Compare(b.From()) }
	for i := range c.ranges {
		var a, b []netipx.IPRange
		if i < len(runs[0]) {
			a = runs[0][i]
		}
		if i < len(runs[1]) {
			b = runs[1][i]
		}
		for _, r := range [][]netipx.IPRange{a, b} {
			if !slices.IsSortedFunc(r, byFrom) {
				slices.SortFunc(r, byFrom)
			}
		}
		out := make([]netipx.IPRange, 0, len(a)+len(b))
		for len(a) > 0 || len(b) > 0 {
			var r netipx.IPRange
			if len(b) == 0 || len(a) > 0 && byFrom(a[0], b[0]) <= 0 {
				r, a = a[0], a[1:]
			} else {
				r, b = b[0], b[1:]
			}
			out = appendMerged(out, r)
		}
		c.ranges[i] = out
	}
	return c
}

// appendMerged appends r, which starts at or after the last range of out,
// to out, joining it to that range when they overlap or touch. Families
// never join: the address after the last IPv4 address is invalid.
func appendMerged(out []netipx.IPRange, r netipx.IPRange) []netipx.IPRange {
	if n := len(out); n > 0 && (r.From().Compare(out[n-1].To()) <= 0 || r.From() == out[n-1].To().Next()) {
		if r.To().Compare(out[n-1].To()) > 0 {
			out[n-1] = netipx.IPRangeFrom(out[n-1].From(), r.To())
		}
		return out
	}
	return append(out, r)
}

// meeting returns whether an entry's range meets the range of an entry
// of need under the same key.
func meeting(need []Entry) func(Entry) bool {
	idx := map[Entry][]netipx.IPRange{}
	for _, e := range need {
		k := key(e)
		idx[k] = append(idx[k], netipx.RangeOfPrefix(e.Prefix.Masked()))
	}
	for k, rs := range idx {
		// Sorted and merged, so the first range ending at or after an
		// address is the only one to look at.
		slices.SortFunc(rs, func(a, b netipx.IPRange) int { return a.From().Compare(b.From()) })
		out := rs[:0]
		for _, r := range rs {
			out = appendMerged(out, r)
		}
		idx[k] = out
	}
	// Entries come grouped by key: the last key saves most map lookups.
	var lastKey Entry
	var last []netipx.IPRange
	have := false
	return func(e Entry) bool {
		if k := key(e); !have || k != lastKey {
			lastKey, last, have = k, idx[k], true
		}
		if len(last) == 0 {
			return false
		}
		r := netipx.RangeOfPrefix(e.Prefix.Masked())
		j, _ := slices.BinarySearchFunc(last, r.From(), func(x netipx.IPRange, a netip.Addr) int { return x.To().Compare(a) })
		return j < len(last) && last[j].From().Compare(r.To()) <= 0
	}
}

func (c *coverage) covers(e Entry) bool {
	i := c.slot(key(e), false)
	if i < 0 {
		return false
	}
	rs := c.ranges[i]
	r := netipx.RangeOfPrefix(e.Prefix.Masked())
	// The last range starting at or before r is the only one that can
	// hold it: merged ranges neither overlap nor touch.
	j, found := slices.BinarySearchFunc(rs, r.From(), func(x netipx.IPRange, a netip.Addr) int { return x.From().Compare(a) })
	if !found {
		j--
	}
	return j >= 0 && rs[j].Contains(r.From()) && rs[j].Contains(r.To())
}
