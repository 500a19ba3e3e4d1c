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
	Protocol  string
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

// Entries expands the set into one entry per prefix and port.
func (d DesiredSet) Entries() []Entry {
	out := make([]Entry, 0, len(d.Prefixes)*len(d.Ports))
	for _, port := range d.Ports {
		for _, p := range d.Prefixes {
			out = append(out, Entry{Set: d.Name, Prefix: p, Direction: d.Direction, Protocol: d.Protocol, Port: port})
		}
	}
	return Sort(out)
}

// Aggregate canonicalises and merges prefixes so that what we store matches
// what AWS and nft's auto-merge would store; otherwise every run shows drift.
//
// The input is sorted once and merged in a single pass; netipx turns each
// merged range back into CIDRs. Feeding a million prefixes through
// netipx.IPSetBuilder instead costs 4x the time and 300 MB, because it
// grows and sorts a slice of pointer-carrying ranges (scripts/bench).
func Aggregate(ps []netip.Prefix) ([]netip.Prefix, error) {
	sorted := make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		if !p.IsValid() {
			return nil, fmt.Errorf("aggregate: invalid prefix %v", p)
		}
		sorted = append(sorted, p.Masked())
	}
	slices.SortFunc(sorted, ComparePrefix)
	// Merged output is written over the input already read: k prefixes
	// never need more than k CIDRs, so writes stay behind reads.
	a := Aggregator{out: sorted[:0]}
	for _, p := range sorted {
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
func (p SinkPlan) Result() []Entry {
	return Sort(append(slices.Clone(p.Keep), p.Add...))
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

// Calculate diffs desired sets against a sink's current state with the
// default limits and no retirement; runs use Input.Calculate.
func Calculate(sink string, desired []DesiredSet, current State, policy Policy) SinkPlan {
	return Input{Sink: sink, Desired: desired, Current: current, Policy: policy}.Calculate()
}

// Calculate diffs the desired sets against the sink's current state. Only
// owned entries are ever removed. An owned entry that fails validation is
// removed and listed in Unsafe whatever the policy; one of a retired set is
// removed as the policy allows and listed in Retired. Entries of frozen sets, and of known sets this run does not
// manage, are kept untouched.
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
	foreign := make(map[Entry]bool, len(in.Current.Foreign))
	for _, e := range in.Current.Foreign {
		e.Set = ""
		foreign[e] = true
	}
	owned := make(map[string]map[Entry]bool)
	var retired []Entry
	p := SinkPlan{Sink: in.Sink, Drift: slices.Clone(in.Current.Drift), Snapshot: in.Current.Snapshot}
	for _, e := range Sort(slices.Clone(in.Current.Owned)) {
		switch _, ok := active[e.Set]; {
		case e.Validate(limits) != nil:
			// Removing a rule we would never write is always safe.
			p.Remove = append(p.Remove, e)
			p.Unsafe = append(p.Unsafe, e)
		case known != nil && !known[e.Set]:
			retired = append(retired, e)
		case !ok:
			p.Keep = append(p.Keep, e)
		default:
			if owned[e.Set] == nil {
				owned[e.Set] = make(map[Entry]bool)
			}
			owned[e.Set][e] = true
		}
	}
	// A retired set is removed as a shrinking set would be: the policy
	// decides, so upsert-only still never removes a valid entry.
	if len(retired) > 0 {
		_, fremove := policy.Filter(nil, retired, true)
		p.Remove = append(p.Remove, fremove...)
		p.Retired = append(p.Retired, fremove...)
		if n := len(retired) - len(fremove); n > 0 {
			kept := make(map[Entry]bool, len(fremove))
			for _, e := range fremove {
				kept[e] = true
			}
			for _, e := range retired {
				if !kept[e] {
					p.Keep = append(p.Keep, e)
					p.Held++
				}
			}
		}
	}
	names := slices.Sorted(maps.Keys(active))
	for _, name := range names {
		have := owned[name]
		var add, remove []Entry
		want := active[name].Entries()
		wanted := make(map[Entry]bool, len(want))
		for _, e := range want {
			wanted[e] = true
			switch {
			case have[e]:
				p.Keep = append(p.Keep, e)
			case foreign[unset(e)]:
				p.Covered = append(p.Covered, e)
			default:
				add = append(add, e)
			}
		}
		for e := range have {
			if !wanted[e] {
				remove = append(remove, e)
			}
		}
		remove = Sort(remove)
		fadd, fremove := policy.Filter(add, remove, len(have) > 0)
		p.Add = append(p.Add, fadd...)
		p.Remove = append(p.Remove, fremove...)
		if len(fremove) < len(remove) {
			kept := make(map[Entry]bool, len(fremove))
			for _, e := range fremove {
				kept[e] = true
			}
			for _, e := range remove {
				if !kept[e] {
					p.Keep = append(p.Keep, e)
					p.Held++
				}
			}
		}
	}
	p.Add = Sort(p.Add)
	p.Remove = Sort(p.Remove)
	p.Keep = Sort(p.Keep)
	p.Covered = Sort(p.Covered)
	return p
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
	}{{"owned", s.Owned}, {"foreign", s.Foreign}} {
		fmt.Fprintf(h, "%s\n", part.tag)
		for _, e := range Sort(slices.Clone(part.entries)) {
			fmt.Fprintf(h, "%s\n", e)
		}
	}
	drift := slices.Clone(s.Drift)
	sort.Strings(drift)
	fmt.Fprintf(h, "drift\n%s\n", strings.Join(drift, "\n"))
	return hex.EncodeToString(h.Sum(nil))
}
