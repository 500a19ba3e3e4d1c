package ec2

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
)

// key is a rule as EC2 identifies it: an entry without its set. A group
// holds one rule per key, a prefix list one entry per prefix, however many
// sets want it.
func key(e plan.Entry) plan.Entry {
	e.Set = ""
	return e
}

// claim gives every wanted key to exactly one set, so the plan never asks
// for two rules EC2 would see as one, and stays the same on the next run:
//   - the set whose marker the rule carries keeps it while it wants it;
//   - a frozen or unrouted holder keeps it (the plan keeps its entries);
//   - a single-port holder keeps it while any set wants it, which saves
//     relabelling a rule when sets overlap;
//   - otherwise the first set by name that wants it takes it.
//
// A set that wants a prefix on several ports, some of them claimed by
// another set, cannot be expressed as a DesiredSet; those are returned as
// conflicts for Check to refuse.
func claim(desired []plan.DesiredSet, held map[plan.Entry]string) (out []plan.DesiredSet, conflicts []string) {
	byName := make(map[string]plan.DesiredSet, len(desired))
	var names []string
	for _, d := range desired {
		byName[d.Name] = d
		if !d.Frozen {
			names = append(names, d.Name)
		}
	}
	sort.Strings(names)
	wantedBy := map[plan.Entry][]string{}
	for _, n := range names {
		for _, e := range byName[n].Entries() {
			wantedBy[key(e)] = append(wantedBy[key(e)], n)
		}
	}
	owner := make(map[plan.Entry]string, len(wantedBy))
	for k, sets := range wantedBy {
		h, ok := held[k]
		hd, routed := byName[h]
		switch {
		case ok && slices.Contains(sets, h):
			owner[k] = h
		case ok && (!routed || hd.Frozen):
			owner[k] = h
		case ok && len(hd.Ports) == 1 && hd.Ports[0] == k.Port && hd.Direction == k.Direction && hd.Protocol == k.Protocol:
			owner[k] = h
		default:
			owner[k] = sets[0]
		}
	}
	extra := map[string][]netip.Prefix{}
	for k, o := range owner {
		if !slices.Contains(wantedBy[k], o) && !byName[o].Frozen {
			if _, routed := byName[o]; routed {
				extra[o] = append(extra[o], k.Prefix)
			}
		}
	}
	out = make([]plan.DesiredSet, 0, len(desired))
	for _, d := range desired {
		c := d
		c.Ports = slices.Clone(d.Ports)
		if d.Frozen {
			c.Prefixes = slices.Clone(d.Prefixes)
			out = append(out, c)
			continue
		}
		c.Prefixes = nil
		for _, p := range d.Prefixes {
			mine, others := 0, ""
			for _, port := range d.Ports {
				k := plan.Entry{Prefix: p, Direction: d.Direction, Protocol: d.Protocol, Port: port}
				if owner[k] == d.Name {
					mine++
				} else {
					others = owner[k]
				}
			}
			if mine > 0 {
				c.Prefixes = append(c.Prefixes, p)
				if others != "" {
					conflicts = append(conflicts, fmt.Sprintf("sets %s and %s both allow %s %s but on different ports", d.Name, others, p, d.Direction))
				}
			}
		}
		c.Prefixes = append(c.Prefixes, extra[d.Name]...)
		slices.SortFunc(c.Prefixes, func(a, b netip.Prefix) int {
			if x := a.Addr().Compare(b.Addr()); x != 0 {
				return x
			}
			return a.Bits() - b.Bits()
		})
		c.Prefixes = slices.Compact(c.Prefixes)
		out = append(out, c)
	}
	sort.Strings(conflicts)
	return out, slices.Compact(conflicts)
}
