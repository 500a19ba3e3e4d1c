package plan

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strings"
)

// DesiredSet is one named set after resolution, validation and aggregation.
type DesiredSet struct {
	Name      string
	Direction Direction
	Protocol  Protocol
	Ports     []uint16
	// Prefixes are canonical and aggregated; IPv4 first.
	Prefixes []netip.Prefix
	// Frozen sets keep whatever the sinks hold: their sources failed, came
	// back empty, or offered something unsafe.
	Frozen bool
	Reason string
	// LastKnown is, for a frozen set, what it last vouched for (state
	// memory and what the sinks hold for it). Nothing is planned from it,
	// but no other set's change may remove an address in it.
	LastKnown []netip.Prefix
}

// Entries expands the set into one entry per prefix and port, sorted.
func (d DesiredSet) Entries() []Entry {
	ports, prefixes := d.sortedPorts(), d.sortedPrefixes()
	out := make([]Entry, 0, len(prefixes)*len(ports))
	for _, port := range ports {
		for _, p := range prefixes {
			out = append(out, Entry{Set: d.Name, Prefix: p, Direction: d.Direction, Protocol: d.Protocol, Port: port})
		}
	}
	return out
}

// sortedPorts and sortedPrefixes return the set's ports and prefixes in
// Compare order without duplicates; resolution already leaves them so,
// and then they are returned as they are.
func (d DesiredSet) sortedPorts() []uint16 {
	for i := 1; i < len(d.Ports); i++ {
		if d.Ports[i-1] >= d.Ports[i] {
			return slices.Compact(slices.Sorted(slices.Values(d.Ports)))
		}
	}
	return d.Ports
}

func (d DesiredSet) sortedPrefixes() []netip.Prefix {
	for i := 1; i < len(d.Prefixes); i++ {
		if ComparePrefix(d.Prefixes[i-1], d.Prefixes[i]) >= 0 {
			ps := slices.Clone(d.Prefixes)
			slices.SortFunc(ps, ComparePrefix)
			return slices.Compact(ps)
		}
	}
	return d.Prefixes
}

// Aggregate canonicalises and merges prefixes so that what we store matches
// what AWS and nft's auto-merge would store; otherwise every run shows drift.
//
// The input is sorted once and merged in a single pass; netipx turns each
// merged range back into CIDRs. Feeding a million prefixes through
// netipx.IPSetBuilder instead costs 4x the time and 300 MB, because it
// grows and sorts a slice of pointer-carrying ranges (scripts/bench).
func Aggregate(ps []netip.Prefix) ([]netip.Prefix, error) {
	return AggregateInPlace(slices.Clone(ps))
}

// AggregateInPlace is Aggregate of ps that writes over ps: for a caller
// that made ps for it, such as an answer with a few addresses appended,
// it saves a copy of the answer.
func AggregateInPlace(ps []netip.Prefix) ([]netip.Prefix, error) {
	for i, p := range ps {
		if !p.IsValid() {
			return nil, fmt.Errorf("aggregate: invalid prefix %v", p)
		}
		ps[i] = p.Masked()
	}
	if !slices.IsSortedFunc(ps, ComparePrefix) {
		slices.SortFunc(ps, ComparePrefix)
	}
	// Merged output is written over the input already read: k prefixes
	// never need more than k CIDRs, so writes stay behind reads.
	a := Aggregator{out: ps[:0]}
	for _, p := range ps {
		if err := a.Add(p); err != nil {
			return nil, err
		}
	}
	return a.Prefixes(), nil
}

// ComparePrefix orders IPv4 before IPv6, then by address, then by length.
// netip.Prefix.Compare puts length before address, which would reorder
// every plan, state file and golden output, so this order stays.
func ComparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// State is what a sink holds now. Owned entries carry our marker; Foreign
// ones are identical rules someone else made, which satisfy a need but are
// never touched.
type State struct {
	Owned   []Entry
	Foreign []Entry
	// Unlabelled are entries held under our marker whose set the sink's
	// ownership record no longer names (a WAF description or a rule
	// comment edited by hand); their Set is empty. The plan counts each
	// as held by every set routed to the sink, so a broken record never
	// turns into removals; the sink reports it as Drift, and the apply
	// writes the record again.
	Unlabelled []Entry
	// Drift lists differences that are not entries, such as a missing jump
	// rule or a changed sink option; applying the plan repairs them.
	Drift []string
	// Snapshot is what the sink read, in its own terms (rule ids, a list
	// version), opaque to the plan. The plan carries it to Shape, Check and
	// Apply, so a sink keeps no state between calls.
	Snapshot any
}

// SinkPlan is the change set for one sink.
type SinkPlan struct {
	Sink   string  `json:"sink"`
	Add    []Entry `json:"add"`
	Remove []Entry `json:"remove"`
	// Keep is everything owned that stays; sinks that rewrite whole files
	// need it, output shows only its length.
	Keep []Entry `json:"-"`
	// Covered entries are wanted but already allowed by a rule we do not own.
	Covered []Entry `json:"covered,omitempty"`
	// Held entries would be removed under the sync policy but the chosen
	// policy keeps them.
	Held int `json:"held,omitempty"`
	// Drift is repaired by the apply even when no entry changes.
	Drift []string `json:"drift,omitempty"`
	// Unsafe lists the entries of Remove that were read back under our
	// marker but fail validation; removing them is always safe, so the
	// max-delete guard does not count them.
	Unsafe []Entry `json:"unsafe,omitempty"`
	// Retired lists the entries of Remove that belong to a set no longer
	// defined or no longer routed to this sink; max-delete counts them.
	Retired []Entry `json:"retired,omitempty"`
	// Snapshot is State.Snapshot of the read this plan was made from.
	Snapshot any `json:"-"`
}

// Unchanged counts the owned entries that stay as they are.
func (p SinkPlan) Unchanged() int { return len(p.Keep) }

// HasChanges reports whether applying the plan would change anything.
func (p SinkPlan) HasChanges() bool {
	return len(p.Add) > 0 || len(p.Remove) > 0 || len(p.Drift) > 0
}

// Result is the entries the sink holds once the plan is applied.
// It may share memory with Keep or Add: callers must not modify it.
func (p SinkPlan) Result() []Entry { return p.result(Sorted(p.Keep) && Sorted(p.Add)) }

// result is Result once whether Keep and Add are both sorted is known.
func (p SinkPlan) result(sorted bool) []Entry {
	if sorted {
		switch {
		case len(p.Add) == 0:
			return p.Keep[:len(p.Keep):len(p.Keep)]
		case len(p.Keep) == 0:
			return p.Add[:len(p.Add):len(p.Add)]
		}
		return Merge(p.Keep, p.Add)
	}
	return Sort(append(slices.Clone(p.Keep), p.Add...))
}

// Runs returns Result as sorted runs, each a part of Keep or of Add,
// whose concatenation is Result. A sink that writes the result out walks
// them instead of a merged copy: at a million entries, one address added
// would copy 56 MB. Where Keep and Add cannot be walked apart (either out
// of order, an entry in both, or Add not small beside Keep, where a run
// per entry would cost more than the copy), it is Result as one run.
func (p SinkPlan) Runs() [][]Entry {
	keep, add := p.Keep, p.Add
	// Each order is checked once: at a million entries a pass is 10 ms.
	sorted := Sorted(keep) && Sorted(add)
	if !sorted || len(add) == 0 || len(keep) == 0 || len(add) > len(keep)/galloping {
		return [][]Entry{p.result(sorted)}
	}
	var runs [][]Entry
	from := 0 // the first entry of Add not yet in a run
	for i, e := range add {
		j, found := slices.BinarySearchFunc(keep, e, Compare)
		if found {
			return [][]Entry{p.result(true)}
		}
		if j > 0 {
			if i > from {
				runs = append(runs, add[from:i:i])
			}
			runs = append(runs, keep[:j:j])
			keep, from = keep[j:], i
		}
	}
	runs = append(runs, add[from:len(add):len(add)])
	if len(keep) > 0 {
		runs = append(runs, keep[:len(keep):len(keep)])
	}
	return runs
}

// Policy decides which changes a plan may carry, as in external-dns.
type Policy interface {
	// Filter gets the full sync changes for one set, and whether the sink
	// already holds entries of that set.
	Filter(add, remove []Entry, held bool) (keepAdd, keepRemove []Entry)
}

type syncPolicy struct{}

func (syncPolicy) Filter(add, remove []Entry, _ bool) ([]Entry, []Entry) { return add, remove }

type upsertOnlyPolicy struct{}

func (upsertOnlyPolicy) Filter(add, _ []Entry, _ bool) ([]Entry, []Entry) { return add, nil }

type createOnlyPolicy struct{}

func (createOnlyPolicy) Filter(add, _ []Entry, held bool) ([]Entry, []Entry) {
	if held {
		return nil, nil
	}
	return add, nil
}

// Policies maps flag values to policies.
var Policies = map[string]Policy{
	"sync":        syncPolicy{},
	"upsert-only": upsertOnlyPolicy{},
	"create-only": createOnlyPolicy{},
}

// PolicyNames lists the valid --policy values, sorted.
func PolicyNames() []string {
	return slices.Sorted(maps.Keys(Policies))
}

// Input is everything Calculate diffs for one sink.
type Input struct {
	Sink    string
	Desired []DesiredSet
	Current State
	Policy  Policy
	// Limits validate what the sink holds under our marker, as they do
	// answers; the zero value means DefaultLimits.
	Limits Limits
	// Known lists the sets defined and routed to this sink, selected this
	// run or not. An owned entry of any other set is retired: removed, so a
	// set dropped from the config cannot keep addresses open for ever. Nil
	// retires nothing.
	Known []string
}

// Calculate diffs the desired sets against the sink's current state. Only
// owned entries are ever removed. An owned entry that fails validation is
// removed and listed in Unsafe whatever the policy; one of a retired set is
// removed as the policy allows and listed in Retired. Entries of frozen sets, and of known sets this run does not
// manage, are kept untouched. Unlabelled entries are first given to a
// routed set (attribute), so a broken ownership record removes nothing a
// set still wants.
//
// Everything is done on sorted slices: each set's wanted entries are
// merged with what the sink holds of that set in one pass, so a million
// entries cost a few copies and no hash map.
func (in Input) Calculate() SinkPlan {
	policy, limits := in.Policy, in.Limits
	if policy == nil {
		policy = syncPolicy{}
	}
	if limits.IsZero() {
		limits = DefaultLimits
	}
	var known map[string]bool
	if in.Known != nil {
		known = make(map[string]bool, len(in.Known)+len(in.Desired))
		for _, name := range in.Known {
			known[name] = true
		}
	}
	active := make(map[string]DesiredSet, len(in.Desired))
	for _, d := range in.Desired {
		if known != nil {
			known[d.Name] = true
		}
		if !d.Frozen {
			active[d.Name] = d
		}
	}
	// Foreign rules belong to no set: any identical rule covers the need.
	foreign := make([]Entry, len(in.Current.Foreign))
	for i, e := range in.Current.Foreign {
		foreign[i] = unset(e)
	}
	foreign = Sort(foreign)
	// owned holds, per active set, its run of the sorted owned entries.
	owned := make(map[string][]Entry)
	var retired []Entry
	p := SinkPlan{Sink: in.Sink, Drift: slices.Clone(in.Current.Drift), Snapshot: in.Current.Snapshot}
	cur := in.Current.Owned
	if len(in.Current.Unlabelled) > 0 {
		labelled, orphans := in.attribute()
		cur = Sort(append(slices.Clone(cur), labelled...))
		retired = append(retired, orphans...)
	} else if !Sorted(cur) {
		cur = Sort(slices.Clone(cur))
	}
	// The set name is matched once per run of one set, not per entry.
	var lastSet string
	var lastSetOK bool
	for i := 0; i < len(cur); {
		e := cur[i]
		if e.Set != lastSet || i == 0 {
			lastSet, lastSetOK = e.Set, setName.MatchString(e.Set)
		}
		valid := lastSetOK && e.validateRest(limits) == nil
		_, ok := active[e.Set]
		switch {
		case !valid:
			// Removing a rule we would never write is always safe.
			p.Remove = append(p.Remove, e)
			p.Unsafe = append(p.Unsafe, e)
		case known != nil && !known[e.Set]:
			retired = append(retired, e)
		case !ok:
			// Kept: Keep is cur less what is removed.
		default:
			// A run of valid entries of one active set goes in whole; an
			// invalid one among them ends the run.
			j := i + 1
			for j < len(cur) && cur[j].Set == e.Set && cur[j].validateRest(limits) == nil {
				j++
			}
			if owned[e.Set] == nil {
				owned[e.Set] = cur[i:j:j] // no copy; a later run appends to a copy
			} else {
				owned[e.Set] = append(owned[e.Set], cur[i:j]...)
			}
			i = j
			continue
		}
		i++
	}
	// A retired set is removed as a shrinking set would be: the policy
	// decides, so upsert-only still never removes a valid entry.
	if len(retired) > 0 {
		_, fremove := policy.Filter(nil, retired, true)
		p.Remove = append(p.Remove, fremove...)
		p.Retired = append(p.Retired, fremove...)
		p.Held += len(retired) - len(fremove)
	}
	names := slices.Sorted(maps.Keys(active))
	for _, name := range names {
		have := owned[name]
		d := active[name]
		ports, prefixes := d.sortedPorts(), d.sortedPrefixes()
		var add, remove []Entry
		kept := 0
		// Wanted entries come in order, port by port, so they meet the
		// sorted entries held in one merge pass, never all built at once.
		i := 0
		for _, port := range ports {
			for _, pfx := range prefixes {
				e := Entry{Set: d.Name, Prefix: pfx, Direction: d.Direction, Protocol: d.Protocol, Port: port}
				for i < len(have) && Compare(have[i], e) < 0 {
					remove = append(remove, have[i])
					i++
				}
				switch {
				case i < len(have) && have[i] == e:
					kept++
					i++
				case len(foreign) > 0 && hasEntry(foreign, unset(e)):
					p.Covered = append(p.Covered, e)
				default:
					if add == nil {
						// At least what the held entries cannot cover:
						// a first run's whole set at once, not a
						// wanted-sized slice for one addition met early.
						add = make([]Entry, 0, max(len(ports)*len(prefixes)-len(have), 16))
					}
					add = append(add, e)
				}
			}
		}
		remove = append(remove, have[i:]...)
		fadd, fremove := policy.Filter(add, remove, len(have) > 0)
		if p.Add == nil {
			p.Add = fadd
		} else {
			p.Add = append(p.Add, fadd...)
		}
		p.Remove = append(p.Remove, fremove...)
		p.Held += len(remove) - len(fremove)
	}
	p.Add = Sort(p.Add)
	p.Remove = Sort(p.Remove)
	// Every entry of cur is either removed or kept (held ones included),
	// so Keep is cur less Remove, in order, copied in runs.
	p.Keep = without(cur, p.Remove)
	p.Covered = Sort(p.Covered)
	return p
}

// attribute gives each unlabelled entry to one set routed to the sink, as
// if every routed set held it: the first active set by name that wants it
// keeps it; else the first set that keeps what it holds untouched (frozen,
// or routed but not selected this run); else the first active set, whose
// plan drops it as any entry it no longer wants, as the policy allows.
// With no set routed at all, the entries come back as orphans to retire.
func (in Input) attribute() (labelled, orphans []Entry) {
	type wanter struct {
		d        DesiredSet
		ports    []uint16
		prefixes []netip.Prefix
	}
	var active []wanter
	var keepers []string
	desired := map[string]bool{}
	for _, d := range in.Desired {
		desired[d.Name] = true
		if d.Frozen {
			keepers = append(keepers, d.Name)
		} else {
			active = append(active, wanter{d, d.sortedPorts(), d.sortedPrefixes()})
		}
	}
	for _, name := range in.Known {
		if !desired[name] {
			keepers = append(keepers, name)
		}
	}
	slices.SortFunc(active, func(a, b wanter) int { return strings.Compare(a.d.Name, b.d.Name) })
	slices.Sort(keepers)
	for _, e := range in.Current.Unlabelled {
		e.Set = ""
		for _, w := range active {
			if w.d.Direction != e.Direction || w.d.Protocol != e.Protocol {
				continue
			}
			if _, ok := slices.BinarySearch(w.ports, e.Port); !ok {
				continue
			}
			if _, ok := slices.BinarySearchFunc(w.prefixes, e.Prefix, ComparePrefix); ok {
				e.Set = w.d.Name
				break
			}
		}
		switch {
		case e.Set != "":
		case len(keepers) > 0:
			e.Set = keepers[0]
		case len(active) > 0:
			e.Set = active[0].d.Name
		default:
			orphans = append(orphans, e)
			continue
		}
		labelled = append(labelled, e)
	}
	return labelled, orphans
}

// hasEntry reports whether sorted es holds e.
func hasEntry(es []Entry, e Entry) bool {
	_, ok := slices.BinarySearchFunc(es, e, Compare)
	return ok
}

func unset(e Entry) Entry {
	e.Set = ""
	return e
}

// Fingerprint identifies a sink state, so a saved plan can be refused once
// the sink has changed since it was made.
func (s State) Fingerprint() string {
	h := sha256.New()
	for _, part := range []struct {
		tag     string
		entries []Entry
	}{{"owned", s.Owned}, {"foreign", s.Foreign}, {"unlabelled", s.Unlabelled}} {
		if part.tag == "unlabelled" && len(part.entries) == 0 {
			continue // fingerprints of states without any stay as they were
		}
		fmt.Fprintf(h, "%s\n", part.tag)
		es := part.entries
		if !Sorted(es) {
			es = Sort(slices.Clone(es))
		}
		var line []byte
		for _, e := range es {
			line = append(e.AppendText(line[:0]), '\n')
			h.Write(line)
		}
	}
	drift := slices.Clone(s.Drift)
	sort.Strings(drift)
	fmt.Fprintf(h, "drift\n%s\n", strings.Join(drift, "\n"))
	return hex.EncodeToString(h.Sum(nil))
}
