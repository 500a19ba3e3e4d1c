package ec2

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
)

// With prefix_lists the group holds, per direction, protocol and port of
// its sets, one rule referencing each list of a series it fills itself.
// The plan stays in entries: Current expands each reference of ours into
// the entries of the list it references, and Apply turns the plan's result
// back into list entries and references.

// combo is what a rule allows besides its peer.
type combo struct {
	dir   plan.Direction
	proto plan.Protocol
	port  uint16
}

func (c combo) key(p netip.Prefix) plan.Entry {
	return plan.Entry{Prefix: p, Direction: c.dir, Protocol: c.proto, Port: c.port}
}

func (c combo) String() string { return fmt.Sprintf("%s %s/%d", c.dir, c.proto, c.port) }

func compareCombo(a, b combo) int {
	return cmp.Or(cmp.Compare(a.dir, b.dir), cmp.Compare(a.proto, b.proto), cmp.Compare(a.port, b.port))
}

// listRef is a rule of ours referencing one list (by id) on one combo.
type listRef struct {
	combo
	list string
}

// slot is a reference by the list's place in the series, as a list made
// by this apply has no id yet.
type slot struct {
	combo
	list int
}

// refLabel describes our reference rules. A reference serves every set
// routed to the group, so it names the option, not a set.
func (g *Group) refLabel() string { return sink.Marker(g.owner, "prefix_lists") }

// ownRef says whether a rule referencing a prefix list is ours: its
// description carries our marker, or it has none and carries the tags we
// give our rules (moto 5.2 drops the description of a prefix-list rule
// and keeps its tags).
func (g *Group) ownRef(r types.SecurityGroupRule) bool {
	desc := aws.ToString(r.Description)
	_, ours := sink.ParseMarker(g.owner, desc)
	return ours || desc == "" && taggedOurs(r.Tags, g.owner)
}

// seriesName is how messages name the series.
func (g *Group) seriesName() string {
	if g.lists.lists > 1 {
		return g.lists.ref + "…"
	}
	return g.lists.ref
}

// readSeries sorts our reference rules (mine) into references to the
// series and strays, reads the series, and expands each reference into
// the entries it allows. It returns the strays' lists by id for counting.
func (g *Group) readSeries(ctx context.Context, snap *groupSnapshot, st *plan.State, mine []types.SecurityGroupRule) (map[string][]plan.Direction, error) {
	var series *seriesSnapshot
	if g.lists != nil {
		var err error
		if series, _, err = g.lists.read(ctx); err != nil {
			return nil, err
		}
		snap.series = series
	}
	index := map[string]int{}
	if series != nil {
		for i, ls := range series.lists {
			if ls.id != "" && ls.ours {
				index[ls.id] = i
			}
		}
	}
	strays := map[string][]plan.Direction{}
	nstrays := 0
	for _, r := range mine {
		c, ok := ruleCombo(r)
		id := aws.ToString(r.PrefixListId)
		_, inSeries := index[id]
		ref := listRef{c, id}
		if _, dup := snap.refs[ref]; !ok || !inSeries || dup {
			dir := plan.Ingress
			if aws.ToBool(r.IsEgress) {
				dir = plan.Egress
			}
			strays[id] = append(strays[id], dir)
			snap.strays[dir] = append(snap.strays[dir], aws.ToString(r.SecurityGroupRuleId))
			nstrays++
			continue
		}
		snap.refs[ref] = aws.ToString(r.SecurityGroupRuleId)
	}
	if series == nil {
		if nstrays > 0 {
			st.Drift = append(st.Drift, fmt.Sprintf("%d rules of ours reference prefix lists, and prefix_lists is not set; they are revoked once the rules per CIDR are in place", nstrays))
		}
		return strays, nil
	}
	if nstrays > 0 {
		st.Drift = append(st.Drift, fmt.Sprintf("%d rules of ours reference prefix lists outside %s; they are revoked once what replaces them is in place", nstrays, g.seriesName()))
	}
	fam6 := series.family == "IPv6"
	seen := map[plan.Entry]bool{}
	moved := 0
	for k := range snap.owned {
		seen[k] = true
		if k.Prefix.Addr().Is6() == fam6 {
			moved++
		}
	}
	if moved > 0 {
		st.Drift = append(st.Drift, fmt.Sprintf("%d rules of ours allow one %s CIDR each; they move into the prefix lists %s", moved, series.family, g.seriesName()))
	}
	referenced := map[string]bool{}
	for _, ref := range slices.SortedFunc(maps.Keys(snap.refs), func(a, b listRef) int {
		return cmp.Or(compareCombo(a.combo, b.combo), strings.Compare(a.list, b.list))
	}) {
		ls := series.lists[index[ref.list]]
		referenced[ls.id] = true
		if ls.size() == 0 {
			st.Drift = append(st.Drift, fmt.Sprintf("a rule of ours references the empty prefix list %s (%s) on %s; it is revoked", ls.name, ls.id, ref.combo))
			continue
		}
		for p, set := range ls.owned {
			k := ref.key(p)
			if seen[k] {
				continue
			}
			seen[k] = true
			if set == "" {
				st.Unlabelled = append(st.Unlabelled, k)
				continue
			}
			e := k
			e.Set = set
			st.Owned = append(st.Owned, e)
		}
		for p := range ls.foreign {
			k := ref.key(p)
			if !snap.foreign[k] {
				snap.foreign[k] = true
				st.Foreign = append(st.Foreign, k)
			}
		}
	}
	for i, ls := range series.lists {
		switch {
		case ls.id == "" || !ls.ours:
		case i > 0 && ls.size() == 0 && !referenced[ls.id]:
			groups, err := g.lists.referencing(ctx, ls.id)
			if err != nil {
				return nil, err
			}
			if len(groups) == 0 {
				st.Drift = append(st.Drift, fmt.Sprintf("prefix list %s (%s) is empty and no security group references it; delete it", ls.name, ls.id))
			}
		case ls.maxEntries < g.lists.max:
			if err := g.lists.headroom(ctx, ls); err != nil {
				return nil, err
			}
		}
	}
	return strays, nil
}

// ruleCombo is a rule's protocol and port, if it is one we could have
// written: tcp or udp, one port.
func ruleCombo(r types.SecurityGroupRule) (combo, bool) {
	proto := strings.ToLower(aws.ToString(r.IpProtocol))
	switch proto {
	case "6":
		proto = "tcp"
	case "17":
		proto = "udp"
	}
	from, to := aws.ToInt32(r.FromPort), aws.ToInt32(r.ToPort)
	protocol, err := plan.ParseProtocol(proto)
	if err != nil || from != to || from < 1 || from > 65535 {
		return combo{}, false
	}
	dir := plan.Ingress
	if aws.ToBool(r.IsEgress) {
		dir = plan.Egress
	}
	return combo{dir: dir, proto: protocol, port: uint16(from)}, true
}

// shapeLists refuses sets that one series cannot serve, and gives each
// key to one set as the lists label it: an entry's label is per address,
// the same on every port, and is kept while any set wants it.
func (g *Group) shapeLists(desired []plan.DesiredSet, current plan.State) ([]plan.DesiredSet, error) {
	var first *plan.DesiredSet
	var combos []combo
	for i := range desired {
		d := &desired[i]
		if len(d.Ports) == 0 {
			continue
		}
		if first == nil {
			first = d
			for _, port := range slices.Compact(slices.Sorted(slices.Values(d.Ports))) {
				combos = append(combos, combo{d.Direction, d.Protocol, port})
			}
			continue
		}
		if d.Direction != first.Direction || d.Protocol != first.Protocol || !slices.Equal(ports(*d), ports(*first)) {
			return desired, &plan.GuardError{Guard: plan.GuardEC2Overlap, Sink: g.Name(), Msg: fmt.Sprintf(
				"prefix_lists: sets %s (%s) and %s (%s) differ in direction, protocol or ports, and a rule referencing a prefix list allows every address in it; route only sets with the same direction, protocol and ports to this group",
				first.Name, describe(*first), d.Name, describe(*d))}
		}
	}
	held := map[plan.Entry]string{}
	names := map[string]bool{}
	for _, d := range desired {
		names[d.Name] = true
	}
	if snap, ok := current.Snapshot.(*groupSnapshot); ok {
		for k, r := range snap.owned {
			if r.set != "" {
				held[k] = r.set
			}
		}
		if snap.series != nil {
			for _, ls := range snap.series.lists {
				for p, set := range ls.owned {
					if !names[set] {
						continue
					}
					for _, c := range combos {
						held[c.key(p)] = set
					}
				}
			}
		}
	}
	out, conflicts := plan.Claim(desired, held, plan.KeepLabel)
	if len(conflicts) > 0 {
		return out, &plan.GuardError{Guard: plan.GuardEC2Overlap, Sink: g.Name(), Msg: conflicts[0]}
	}
	return out, nil
}

func ports(d plan.DesiredSet) []uint16 { return slices.Compact(slices.Sorted(slices.Values(d.Ports))) }

func describe(d plan.DesiredSet) string {
	ps := make([]string, 0, len(d.Ports))
	for _, p := range ports(d) {
		ps = append(ps, fmt.Sprint(p))
	}
	return fmt.Sprintf("%s %s/%s", d.Direction, d.Protocol, strings.Join(ps, ","))
}

// layout is what the series and our references will be once a plan is
// applied.
type layout struct {
	changes []listChange
	// refs are the references wanted, by slot of the series.
	refs map[slot]bool
	// size and maxEntries are each list's entries and MaxEntries after.
	size       []int
	maxEntries []int
}

// layout decides, for a plan, what the lists hold (every address of the
// plan's result in their family, and nothing else of ours) and which
// references the group needs (each non-empty list on each combo of the
// result). It refuses a series that holds a list of someone else's, a
// result the lists cannot express (an address on some ports only), and
// what the lists cannot hold (place).
func (g *Group) layout(snap *groupSnapshot, series *seriesSnapshot, p plan.SinkPlan) (*layout, error) {
	for _, ls := range series.lists {
		if ls.id != "" && !ls.ours {
			return nil, &plan.GuardError{Guard: plan.GuardEC2Overlap, Sink: p.Sink, Msg: fmt.Sprintf(
				"prefix list %s (%s) is not tagged as ours (%s=managed, owner %q); prefix_lists references only lists it created: choose another name, or delete or tag that list",
				ls.name, ls.id, ManagedTag, g.owner)}
		}
	}
	fam6 := series.family == "IPv6"
	result := p.Result()
	labels := map[netip.Prefix]string{}
	combos := map[combo]bool{}
	have := make(map[plan.Entry]bool, len(result)+len(p.Covered))
	for _, e := range result {
		k := plan.Key(e)
		have[k] = true
		if e.Prefix.Addr().Is6() != fam6 {
			continue
		}
		if _, ok := labels[e.Prefix]; !ok {
			labels[e.Prefix] = e.Set
		}
		combos[combo{e.Direction, e.Protocol, e.Port}] = true
	}
	for _, e := range p.Covered {
		have[plan.Key(e)] = true
	}
	want := slices.SortedFunc(maps.Keys(labels), plan.ComparePrefix)
	cs := slices.SortedFunc(maps.Keys(combos), compareCombo)
	// Every reference allows every address of every list: the result must
	// be its addresses times its combos.
	for _, c := range cs {
		for _, pfx := range want {
			if !have[c.key(pfx)] {
				return nil, &plan.GuardError{Guard: plan.GuardEC2Overlap, Sink: p.Sink, Msg: fmt.Sprintf(
					"prefix_lists: the lists would allow %s on %s, which the plan does not hold (a rule referencing a prefix list allows every address in it); give the sets routed here the same ports, or sync with --policy sync",
					pfx, c)}
			}
		}
	}
	lp := plan.SinkPlan{Sink: p.Sink}
	for _, pfx := range want {
		lp.Add = append(lp.Add, plan.Entry{Set: labels[pfx], Prefix: pfx})
	}
	for _, ls := range series.lists {
		for _, pfx := range slices.SortedFunc(maps.Keys(ls.owned), plan.ComparePrefix) {
			if _, ok := labels[pfx]; !ok {
				lp.Remove = append(lp.Remove, plan.Entry{Set: ls.owned[pfx], Prefix: pfx})
			}
		}
	}
	changes, err := g.lists.place(series, lp)
	if err != nil {
		return nil, err
	}
	lay := &layout{changes: changes, refs: map[slot]bool{}}
	for i, ls := range series.lists {
		lay.size = append(lay.size, ls.size()+len(changes[i].adds)-len(changes[i].removes))
		lay.maxEntries = append(lay.maxEntries, cmp.Or(changes[i].maxEntries, ls.maxEntries))
		ours := len(ls.owned) + len(changes[i].adds) - len(changes[i].removes)
		for _, c := range cs {
			// A list holding only entries someone else added keeps a
			// reference we have (what it allows may be covering a
			// need) but never gets a new one.
			_, held := snap.refs[listRef{c, ls.id}]
			if ours > 0 || held && ls.id != "" && lay.size[i] > 0 {
				lay.refs[slot{c, i}] = true
			}
		}
	}
	return lay, nil
}

// checkLists counts, per direction and family, the rules the group holds
// at the fullest point of the apply: the references wanted (each as its
// list's MaxEntries after any growth), our rules per CIDR (those the lists
// replace are revoked last), our stray references, and everyone else's.
func (g *Group) checkLists(snap *groupSnapshot, p plan.SinkPlan) error {
	lay, err := g.layout(snap, snap.series, p)
	if err != nil {
		return err
	}
	fam6 := snap.series.family == "IPv6"
	refs, cidrs := map[bucket]int{}, map[bucket]int{}
	nrefs := map[bucket]int{}
	for s := range lay.refs {
		b := bucket{dir: s.dir, v6: fam6}
		refs[b] += lay.maxEntries[s.list]
		nrefs[b]++
	}
	seen := map[plan.Entry]bool{}
	for _, e := range p.Result() {
		k := plan.Key(e)
		if e.Prefix.Addr().Is6() == fam6 || seen[k] || snap.foreign[k] {
			continue
		}
		seen[k] = true
		cidrs[bucket{dir: e.Direction, v6: !fam6}]++
	}
	for k := range snap.owned {
		if k.Prefix.Addr().Is6() == fam6 {
			cidrs[bucket{dir: k.Direction, v6: fam6}]++
		}
	}
	others := maps.Clone(snap.others)
	for i, ls := range snap.series.lists {
		for _, dir := range snap.theirRefs[ls.id] {
			others[bucket{dir: dir, v6: fam6}] += lay.maxEntries[i]
		}
	}
	for _, b := range []bucket{{plan.Ingress, false}, {plan.Ingress, true}, {plan.Egress, false}, {plan.Egress, true}} {
		ours := refs[b] + cidrs[b] + snap.strayCount[b]
		if n := ours + others[b]; n > g.limit {
			return &plan.GuardError{Guard: plan.GuardEC2RuleLimit, Sink: p.Sink, Msg: fmt.Sprintf(
				"the group would hold %d %s rules (%d ours: %d references to the prefix lists %s counting %d as their MaxEntries, %d per CIDR, %d other references; %d others), more than rule_limit %d; raise the AWS quota and rule_limit (EC2 allows at most 1000), or lower max_entries, or route fewer ports or addresses to the group",
				n, b, ours, nrefs[b], g.seriesName(), refs[b], cidrs[b], snap.strayCount[b], others[b], g.limit)}
		}
	}
	return nil
}

// applyLists revokes the references the plan no longer wants (they allow
// only what it drops), writes the lists, references each list that holds
// something on each combo, then handles the rules per CIDR (the other
// family, and ours the lists replace), and last deletes an emptied extra
// list of ours that nothing references any more. No wanted address is
// missing at any point.
func (g *Group) applyLists(ctx context.Context, snap *groupSnapshot, p plan.SinkPlan) error {
	series := snap.series.clone()
	lay, err := g.layout(snap, series, p)
	if err != nil {
		return err
	}
	index := map[string]int{}
	for i, ls := range series.lists {
		if ls.id != "" {
			index[ls.id] = i
		}
	}
	revokes := map[plan.Direction][]string{}
	for ref, id := range snap.refs {
		if !lay.refs[slot{ref.combo, index[ref.list]}] {
			revokes[ref.dir] = append(revokes[ref.dir], id)
		}
	}
	for _, dir := range []plan.Direction{plan.Ingress, plan.Egress} {
		if err := g.revoke(ctx, dir, revokes[dir]); err != nil {
			return err
		}
	}
	if err := g.lists.write(ctx, series, lay.changes); err != nil {
		return err
	}
	adds := map[plan.Direction][]listRef{}
	for _, s := range slices.SortedFunc(maps.Keys(lay.refs), func(a, b slot) int {
		return cmp.Or(compareCombo(a.combo, b.combo), cmp.Compare(a.list, b.list))
	}) {
		ref := listRef{s.combo, series.lists[s.list].id}
		if _, ok := snap.refs[ref]; !ok {
			adds[s.dir] = append(adds[s.dir], ref)
		}
	}
	for _, dir := range []plan.Direction{plan.Ingress, plan.Egress} {
		if err := g.authorizeRefs(ctx, dir, adds[dir]); err != nil {
			return err
		}
	}
	fam6 := series.family == "IPv6"
	moved := map[plan.Direction][]string{}
	for k, r := range snap.owned {
		if k.Prefix.Addr().Is6() == fam6 {
			moved[k.Direction] = append(moved[k.Direction], r.id)
		}
	}
	for dir, ids := range snap.strays {
		moved[dir] = append(moved[dir], ids...)
	}
	inLists := func(e plan.Entry) bool { return e.Prefix.Addr().Is6() == fam6 }
	if err := g.applyRules(ctx, snap, p, inLists, moved); err != nil {
		return err
	}
	for _, ls := range series.lists[1:] {
		if ls.id != "" && ls.ours && ls.size() == 0 {
			if err := g.lists.retire(ctx, ls); err != nil {
				return err
			}
		}
	}
	return nil
}

// authorizeRefs adds our references in one call per direction.
func (g *Group) authorizeRefs(ctx context.Context, dir plan.Direction, refs []listRef) error {
	return authorizeMissing(ctx, g, dir, "reference", refs, g.refPermissions,
		func(snap *groupSnapshot, r listRef) bool { _, ok := snap.refs[r]; return ok })
}

// refPermissions groups references by protocol and port, one permission
// each, every list of a port in it.
func (g *Group) refPermissions(refs []listRef) []types.IpPermission {
	var perms []types.IpPermission
	idx := map[combo]int{}
	for _, r := range refs {
		i, ok := idx[r.combo]
		if !ok {
			i = len(perms)
			idx[r.combo] = i
			perms = append(perms, types.IpPermission{IpProtocol: aws.String(r.proto.String()), FromPort: aws.Int32(int32(r.port)), ToPort: aws.Int32(int32(r.port))})
		}
		perms[i].PrefixListIds = append(perms[i].PrefixListIds, types.PrefixListId{PrefixListId: aws.String(r.list), Description: aws.String(g.refLabel())})
	}
	return perms
}
