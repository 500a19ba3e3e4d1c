package iptables

import (
	"fmt"
	"slices"
	"strings"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
)

// drops reads back the ports our chains close.
func (l layout) drops(rules []rule) []closer {
	var out []closer
	for _, r := range rules {
		if r.raw == "" && r.target == "DROP" && r.comment == l.enforceComment() && r.port != 0 && r.addrOpt == "" && r.ipset == "" {
			dir := plan.Ingress
			if r.chain == l.chainOut {
				dir = plan.Egress
			}
			out = append(out, closer{dir, r.proto, r.port})
		}
	}
	return out
}

// chainState is what one family holds in our chains and hooks.
type chainState struct {
	exists map[string]bool
	rules  []rule // our chains' rules, in order
	// jumps counts our own jump rule per hook. Positions are not kept: a
	// rule number is stale as soon as another tool inserts a rule.
	jumps map[string]int
}

// parseRules reads iptables -S or iptables-restore input, keeping only
// our chains and the jumps into them.
func (l layout) parseRules(text string) (chainState, error) {
	st := chainState{exists: map[string]bool{}, jumps: map[string]int{}}
	ours := func(c string) bool { return c == l.chainIn || c == l.chainOut }
	for n, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		f := strings.Fields(line)
		switch {
		case len(f) == 0 || strings.HasPrefix(line, "#"):
		case f[0] == "-N" && len(f) == 2 && ours(f[1]):
			st.exists[f[1]] = true
		case strings.HasPrefix(line, ":") && ours(strings.TrimPrefix(f[0], ":")):
			st.exists[strings.TrimPrefix(f[0], ":")] = true
		case (f[0] == "-A" || f[0] == "-I") && len(f) > 1:
			r, err := parseRule(line)
			if err != nil {
				return chainState{}, fmt.Errorf("line %d: %w", n+1, err)
			}
			if ours(r.chain) {
				st.rules = append(st.rules, r)
				continue
			}
			for _, h := range l.hooks() {
				if r.chain == h[0] && r.String() == l.jumpRule(h[0], h[1]).String() {
					st.jumps[h[0]]++
				}
			}
		}
	}
	return st, nil
}

// entries turns our chains' rules back into entries. members holds the
// content of every ipset a rule matches against. Rules we would not write
// are counted as odd, never turned into entries; a rule we would write
// whose comment is our marker with a set that no longer reads (edited by
// hand) is returned unlabelled, for the plan to give to a routed set.
func (l layout) entries(fam family, rules []rule, members map[string]setMembers) (owned, unlabelled []plan.Entry, odd int) {
	// Made once at its largest: a million members are 56 MB of entries.
	n := len(rules)
	for _, r := range rules {
		n += members[r.ipset].len()
	}
	owned = make([]plan.Entry, 0, n)
	inOrder := true
	for _, r := range rules {
		dir, addrOpt, setDir := plan.Ingress, "-s", "src"
		if r.chain == l.chainOut {
			dir, addrOpt, setDir = plan.Egress, "-d", "dst"
		}
		if r.raw == "" && r.target == "DROP" && r.comment == l.enforceComment() {
			continue // compared as part of the whole chain in drift
		}
		if r.raw == "" && r.mark != "" && r.chain == l.chainOut && r.target == "ACCEPT" && r.comment == l.selfComment() {
			continue // likewise
		}
		set, ours := sink.ParseMarker(l.owner, r.comment)
		unread := !ours && sink.UnreadableMarker(l.owner, r.comment)
		proto, perr := plan.ParseProtocol(r.proto)
		if r.raw != "" || r.target != "ACCEPT" || !ours && !unread || r.port == 0 || perr != nil {
			odd++
			continue
		}
		out := &owned
		if unread {
			out = &unlabelled
		}
		e := plan.Entry{Set: set, Direction: dir, Protocol: proto, Port: r.port}
		// Whether owned comes out in plan order is seen as it is made:
		// a set's members are sorted, so only the first entry of a rule
		// is compared with the last before it, the others by prefix.
		first := len(owned)
		switch {
		case r.ipset != "" && r.addrOpt == "" && r.setDir == setDir:
			m := members[r.ipset]
			for i := range m.len() {
				if p := m.at(i); fam.holds(p) {
					if out == &owned && len(owned) > first && plan.ComparePrefix(owned[len(owned)-1].Prefix, p) >= 0 {
						inOrder = false
					}
					e.Prefix = p
					*out = append(*out, e)
				}
			}
		case r.ipset == "" && r.addrOpt == addrOpt && fam.holds(r.prefix):
			e.Prefix = r.prefix
			*out = append(*out, e)
		default:
			odd++
		}
		if first > 0 && len(owned) > first && plan.Compare(owned[first-1], owned[first]) >= 0 {
			inOrder = false
		}
	}
	if len(owned) == 0 {
		owned = nil
	}
	if !inOrder {
		owned = plan.Sort(owned)
	}
	return owned, plan.Sort(unlabelled), odd
}

// drift compares what each family holds with what we would write for the
// entries read back from both families, and names the family that
// differs.
func (l layout) drift(states map[family]chainState, entries []plan.Entry, odd map[family]int) []string {
	return l.sortedDrift(states, sorted(entries), odd)
}

// sortedDrift is drift of entries in plan order, as a read returns them.
func (l layout) sortedDrift(states map[family]chainState, entries []plan.Entry, odd map[family]int) []string {
	// Enforce closes the same ports in both families. They are taken from
	// the entries and from the drops either family still holds: a flushed
	// IPv4 chain takes the only entries of an IPv4-only set with it, and
	// the IPv6 drop for that port is then still right. So the family that
	// lost rules is named, not the intact one.
	want := closers(entries)
	closing := slices.Clone(want)
	for _, fam := range families {
		closing = append(closing, l.drops(states[fam].rules)...)
	}
	slices.SortFunc(closing, compareClosers)
	closing = slices.Compact(closing)
	differs := map[family]bool{}
	for _, fam := range families {
		rules, _ := l.rulesOf(fam, sortedGroups(fam, entries), closing)
		differs[fam] = odd[fam] > 0 || !sameRules(rules, states[fam].rules)
	}
	var out []string
	for _, fam := range families {
		st := states[fam]
		tag := fmt.Sprintf("IPv%d", fam)
		for _, c := range []string{l.chainIn, l.chainOut} {
			if !st.exists[c] {
				out = append(out, fmt.Sprintf("%s: chain %s is missing; create it", tag, c))
			}
		}
		switch {
		case odd[fam] > 0:
			out = append(out, fmt.Sprintf("%s: %d rules in our chains were not written by pdsafelist; remove them", tag, odd[fam]))
		case differs[fam]:
			out = append(out, fmt.Sprintf("%s: our chains differ from their entries (hand edit or changed options); rewrite them", tag))
		case !differs[4] && !differs[6]:
			// A port closed for no entry is a leftover only when both
			// families agree on it; otherwise the family that differs
			// explains it, and its rewrite reopens the port.
			for _, c := range closing {
				if !slices.Contains(want, c) {
					out = append(out, fmt.Sprintf("%s: %s drops %s port %d, which no entry uses; rewrite it", tag, l.chain(c.dir), c.proto, c.port))
				}
			}
		}
		for _, h := range l.hooks() {
			switch n := st.jumps[h[0]]; {
			case !l.jump && n > 0:
				out = append(out, fmt.Sprintf("%s: %s still has our jump to %s, and jump is off; remove it", tag, h[0], h[1]))
			case !l.jump:
			case n == 0:
				out = append(out, fmt.Sprintf("%s: %s has no jump to %s; insert it", tag, h[0], h[1]))
			case n > 1:
				out = append(out, fmt.Sprintf("%s: %s jumps to %s %d times; keep one", tag, h[0], h[1], n))
			}
		}
	}
	return out
}

func sameRules(a, b []rule) bool {
	return slices.EqualFunc(a, b, func(x, y rule) bool { return x.String() == y.String() })
}
