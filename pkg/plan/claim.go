package plan

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"

	"go4.org/netipx"
)

// Key is an entry as a sink that stores one label per entry identifies it:
// the entry without its set. An EC2 group holds one rule per key, a prefix
// list one entry per CIDR, however many sets want it.
func Key(e Entry) Entry {
	e.Set = ""
	return e
}

// Relabel says whether a sink can move a held entry from one set's label
// to another's in place, without a moment when the address is missing.
type Relabel bool

const (
	// RelabelInPlace: the sink rewrites the label (EC2
	// ModifySecurityGroupRules), so the plan may hand a key over as an add
	// for the new set and a remove for the old one, which the sink merges.
	RelabelInPlace Relabel = true
	// KeepLabel: the sink cannot; a key keeps its label while any set
	// wants it.
	KeepLabel Relabel = false
)

// Claim gives every key to exactly one set, for sinks whose entries carry
// one label: the plan never asks for two entries the sink sees as one, no
// key that any set wants is removed, and the same inputs give the same
// claim on the next run. held maps each key the sink holds under our
// marker to the set its label names.
//
// A held key stays with its holder while the holder wants it, or when the
// holder is frozen or not routed to the sink (Calculate keeps those). When
// the holder dropped it and an active set wants it, the first such set by
// name takes it if the sink can relabel, else the holder keeps it. When no
// active set wants it but a frozen set vouches for it (its LastKnown, or
// what it holds, overlaps the key on one of its ports), the holder keeps
// it under its current label: a frozen set plans nothing, so handing the
// key to it would be a write during the freeze, and keeping costs no call
// now and at most one relabel when the set answers again. Otherwise the key
// is left unclaimed and Calculate removes it. A key nobody holds goes to
// the first active set by name that wants it.
//
// A set is a list of prefixes times a list of ports, so a set that would
// own a prefix on some of its ports while another set owns it on others
// cannot be expressed; such cases come back as conflicts, for the sink's
// Check to refuse.
func Claim(desired []DesiredSet, held map[Entry]string, relabel Relabel) (out []DesiredSet, conflicts []string) {
	byName := make(map[string]DesiredSet, len(desired))
	var active []string
	for _, d := range desired {
		byName[d.Name] = d
		if !d.Frozen {
			active = append(active, d.Name)
		}
	}
	sort.Strings(active)
	wantedBy := map[Entry][]string{}
	for _, n := range active {
		for _, e := range byName[n].Entries() {
			wantedBy[Key(e)] = append(wantedBy[Key(e)], n)
		}
	}
	vouched := vouchers(desired, held)
	owner := make(map[Entry]string, len(wantedBy)+len(held))
	for k, sets := range wantedBy {
		if _, ok := held[k]; !ok {
			owner[k] = sets[0]
		}
	}
	for k, h := range held {
		sets := wantedBy[k]
		hd, routed := byName[h]
		switch {
		case !routed || hd.Frozen || slices.Contains(sets, h):
			owner[k] = h
		case len(sets) > 0 && relabel == RelabelInPlace:
			owner[k] = sets[0]
		case len(sets) > 0 || vouched(k):
			owner[k] = h
		}
	}
	// An active set keeps what it owns but no longer wants as extra
	// prefixes, so Calculate keeps the entries instead of removing them.
	extra := map[string][]netip.Prefix{}
	for k, o := range owner {
		d, ok := byName[o]
		if !ok || d.Frozen || slices.Contains(wantedBy[k], o) {
			continue
		}
		if k.Direction != d.Direction || k.Protocol != d.Protocol || !slices.Contains(d.Ports, k.Port) {
			// The set's ports changed: it cannot keep this key.
			conflicts = append(conflicts, fmt.Sprintf("set %s holds %s %s %s/%d, no longer one of its ports, and another set still wants it",
				o, k.Prefix, k.Direction, k.Protocol, k.Port))
			continue
		}
		extra[o] = append(extra[o], k.Prefix)
	}
	out = make([]DesiredSet, 0, len(desired))
	for _, d := range desired {
		c := d
		c.Ports = slices.Clone(d.Ports)
		c.LastKnown = slices.Clone(d.LastKnown)
		if d.Frozen {
			c.Prefixes = slices.Clone(d.Prefixes)
			out = append(out, c)
			continue
		}
		candidates := append(slices.Clone(d.Prefixes), extra[d.Name]...)
		slices.SortFunc(candidates, ComparePrefix)
		c.Prefixes = nil
		for _, p := range slices.Compact(candidates) {
			mine, others, adds := 0, "", false
			for _, port := range d.Ports {
				k := Entry{Prefix: p, Direction: d.Direction, Protocol: d.Protocol, Port: port}
				switch owner[k] {
				case d.Name:
					mine++
				case "":
					// Only a kept prefix reaches here: a port it was never
					// held on would be a new entry nobody wants.
					adds = adds || held[k] != d.Name
				default:
					others = owner[k]
				}
			}
			if mine == 0 {
				continue
			}
			c.Prefixes = append(c.Prefixes, p)
			switch {
			case others != "":
				conflicts = append(conflicts, fmt.Sprintf("sets %s and %s both allow %s %s but on different ports", d.Name, others, p, d.Direction))
			case adds:
				conflicts = append(conflicts, fmt.Sprintf("set %s keeps %s %s for another set but would have to add it on ports nobody wants", d.Name, p, d.Direction))
			}
		}
		out = append(out, c)
	}
	sort.Strings(conflicts)
	return out, slices.Compact(conflicts)
}

// vouchers reports whether a frozen set vouches for a key: its LastKnown
// or the prefixes it holds overlap the key's prefix, on one of its ports
// or of the keys it holds. Overlap, not equality: sets aggregate apart, so
// a key may be part of, or cover part of, what the frozen set last had.
func vouchers(desired []DesiredSet, held map[Entry]string) func(Entry) bool {
	type shape struct {
		dir   Direction
		proto Protocol
		port  uint16
	}
	type voucher struct {
		shapes map[shape]bool
		addrs  *netipx.IPSet
	}
	heldBy := map[string][]Entry{}
	for k, s := range held {
		heldBy[s] = append(heldBy[s], k)
	}
	var vs []voucher
	for _, d := range desired {
		if !d.Frozen {
			continue
		}
		v := voucher{shapes: map[shape]bool{}}
		var b netipx.IPSetBuilder
		for _, port := range d.Ports {
			v.shapes[shape{d.Direction, d.Protocol, port}] = true
		}
		for _, p := range d.LastKnown {
			if p.IsValid() {
				b.AddPrefix(p.Masked())
			}
		}
		for _, k := range heldBy[d.Name] {
			v.shapes[shape{k.Direction, k.Protocol, k.Port}] = true
			if k.Prefix.IsValid() {
				b.AddPrefix(k.Prefix.Masked())
			}
		}
		v.addrs, _ = b.IPSet() // only valid prefixes were added
		vs = append(vs, v)
	}
	return func(k Entry) bool {
		for _, v := range vs {
			if v.shapes[shape{k.Direction, k.Protocol, k.Port}] && v.addrs.OverlapsPrefix(k.Prefix) {
				return true
			}
		}
		return false
	}
}
