package ec2fake

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

func (f *Fake) group(id string) ([]*Rule, *APIError) {
	rules, ok := f.groups[id]
	if !ok {
		return nil, apiErr("InvalidGroup.NotFound", "The security group '%s' does not exist", id)
	}
	return rules, nil
}

// describeGroups answers for the groups asked, or every group, with one
// permission per rule (EC2 merges rules of one protocol and port, which
// readers must handle either way).
func describeGroups(f *Fake, q query) (any, *APIError) {
	type xmlGroup struct {
		ID      string    `xml:"groupId"`
		Ingress []xmlPerm `xml:"ipPermissions>item"`
		Egress  []xmlPerm `xml:"ipPermissionsEgress>item"`
	}
	var out struct {
		Groups []xmlGroup `xml:"securityGroupInfo>item"`
	}
	ids := q.strings("GroupId")
	for _, id := range ids {
		if _, err := f.group(id); err != nil {
			return nil, err
		}
	}
	if len(ids) == 0 {
		ids = slices.Sorted(maps.Keys(f.groups))
	}
	for _, id := range ids {
		g := xmlGroup{ID: id}
		for _, r := range f.groups[id] {
			if r.Egress {
				g.Egress = append(g.Egress, toXMLPerm(r))
			} else {
				g.Ingress = append(g.Ingress, toXMLPerm(r))
			}
		}
		out.Groups = append(out.Groups, g)
	}
	return out, nil
}

func describeRules(f *Fake, q query) (any, *APIError) {
	filters := q.filters()
	ids := q.strings("SecurityGroupRuleId")
	var groups []string
	if g, ok := filters["group-id"]; ok {
		groups = g
	} else {
		for id := range f.groups {
			groups = append(groups, id)
		}
		slices.Sort(groups)
	}
	var all []xmlRule
	for _, g := range groups {
		for _, r := range f.groups[g] {
			if len(ids) == 0 || slices.Contains(ids, r.ID) {
				all = append(all, toXMLRule(r))
			}
		}
	}
	var out struct {
		Rules     []xmlRule `xml:"securityGroupRuleSet>item"`
		NextToken string    `xml:"nextToken,omitempty"`
	}
	out.Rules, out.NextToken = page(f, q, all)
	return out, nil
}

// permissions reads IpPermissions.N into rules, canonical and validated.
func (f *Fake) permissions(q query, group string, egress bool) ([]*Rule, *APIError) {
	var out []*Rule
	for _, p := range q.list("IpPermissions") {
		proto := strings.ToLower(p.get("IpProtocol"))
		switch proto {
		case "6":
			proto = "tcp"
		case "17":
			proto = "udp"
		}
		from, to := int32(atoi(p.get("FromPort"))), int32(atoi(p.get("ToPort")))
		if proto != "-1" && (from < 0 || to > 65535 || from > to) {
			return nil, apiErr("InvalidParameterValue", "Invalid port range %d-%d", from, to)
		}
		add := func(cidr, desc string, v6 bool) *APIError {
			c, err := canonical(cidr, v6)
			if err != nil {
				return err
			}
			if err := ValidDescription(desc); err != nil {
				return apiErr("InvalidParameterValue", "Invalid rule description. %v", err)
			}
			out = append(out, &Rule{GroupID: group, Egress: egress, Protocol: proto, FromPort: from, ToPort: to, CIDR: c, Description: desc})
			return nil
		}
		for _, r := range p.list("IpRanges") {
			if err := add(r.get("CidrIp"), r.get("Description"), false); err != nil {
				return nil, err
			}
		}
		for _, r := range p.list("Ipv6Ranges") {
			if err := add(r.get("CidrIpv6"), r.get("Description"), true); err != nil {
				return nil, err
			}
		}
		for _, r := range p.list("PrefixListIds") {
			id, desc := r.get("PrefixListId"), r.get("Description")
			if _, err := f.list(id); err != nil {
				return nil, err
			}
			// EC2 leaves & out for prefix-list and group references.
			if err := ValidDescription(desc); err != nil || strings.Contains(desc, "&") {
				return nil, apiErr("InvalidParameterValue", "Invalid rule description %q.", desc)
			}
			out = append(out, &Rule{GroupID: group, Egress: egress, Protocol: proto, FromPort: from, ToPort: to, PrefixList: id, Description: desc})
		}
	}
	return out, nil
}

// quotaUse counts a group's rules in one direction per family (true: IPv6)
// as EC2 does: a rule referencing a prefix list counts as the list's
// MaxEntries, maxEntries overriding a list's own.
func (f *Fake) quotaUse(rules []*Rule, egress bool, maxEntries map[string]int) map[bool]int {
	count := map[bool]int{}
	for _, r := range rules {
		if r.Egress != egress {
			continue
		}
		if r.PrefixList != "" {
			if l, ok := f.lists[r.PrefixList]; ok {
				n, ok := maxEntries[l.ID]
				if !ok {
					n = l.MaxEntries
				}
				count[l.Family == "IPv6"] += n
			}
			continue
		}
		count[strings.Contains(r.CIDR, ":")]++
	}
	return count
}

// referencedBy lists the groups whose rules reference list id.
func (f *Fake) referencedBy(id string) []string {
	var out []string
	for _, g := range slices.Sorted(maps.Keys(f.groups)) {
		if slices.ContainsFunc(f.groups[g], func(r *Rule) bool { return r.PrefixList == id }) {
			out = append(out, g)
		}
	}
	return out
}

func sameRule(a, b *Rule) bool {
	return a.Egress == b.Egress && a.Protocol == b.Protocol && a.FromPort == b.FromPort && a.ToPort == b.ToPort &&
		a.CIDR == b.CIDR && a.PrefixList == b.PrefixList
}

func authorize(egress bool) handler {
	return func(f *Fake, q query) (any, *APIError) {
		gid := q.get("GroupId")
		rules, err := f.group(gid)
		if err != nil {
			return nil, err
		}
		add, err := f.permissions(q, gid, egress)
		if err != nil {
			return nil, err
		}
		if len(add) == 0 {
			return nil, apiErr("MissingParameter", "no permissions")
		}
		for i, r := range add {
			for _, have := range append(slices.Clone(rules), add[:i]...) {
				if sameRule(r, have) {
					return nil, apiErr("InvalidPermission.Duplicate", "the specified rule \"peer: %s, %s, from port: %d, to port: %d, ALLOW\" already exists", r.CIDR, strings.ToUpper(r.Protocol), r.FromPort, r.ToPort)
				}
			}
		}
		for v6, n := range f.quotaUse(append(slices.Clone(rules), add...), egress, nil) {
			if n > f.RuleLimit {
				fam := "IPv4"
				if v6 {
					fam = "IPv6"
				}
				return nil, apiErr("RulesPerSecurityGroupLimitExceeded", "The maximum number of %s rules per security group (%d) has been reached.", fam, f.RuleLimit)
			}
		}
		tags := q.tags("security-group-rule")
		for _, r := range add {
			r.ID = f.id("sgr")
			if len(tags) > 0 {
				r.Tags = tags
			}
			f.groups[gid] = append(f.groups[gid], r)
		}
		// EC2 also lists the new rules; the fake leaves them out because
		// the SDK, reading answers of tens of kilobytes from an httptest
		// server, now and then failed with "use of closed network
		// connection", and the sink does not read them.
		return returnResp{true}, nil
	}
}

func revoke(egress bool) handler {
	return func(f *Fake, q query) (any, *APIError) {
		gid := q.get("GroupId")
		rules, err := f.group(gid)
		if err != nil {
			return nil, err
		}
		drop := map[*Rule]bool{}
		for _, id := range q.strings("SecurityGroupRuleId") {
			found := false
			for _, r := range rules {
				if r.ID == id && r.Egress == egress {
					drop[r], found = true, true
				}
			}
			if !found {
				return nil, apiErr("InvalidSecurityGroupRuleId.NotFound", "The security group rule ID '%s' does not exist", id)
			}
		}
		perms, err := f.permissions(q, gid, egress)
		if err != nil {
			return nil, err
		}
		for _, p := range perms {
			found := false
			for _, r := range rules {
				if sameRule(p, r) {
					drop[r], found = true, true
				}
			}
			if !found {
				return nil, apiErr("InvalidPermission.NotFound", "The specified rule does not exist in this security group.")
			}
		}
		f.groups[gid] = slices.DeleteFunc(rules, func(r *Rule) bool { return drop[r] })
		return returnResp{true}, nil
	}
}

func modifyRules(f *Fake, q query) (any, *APIError) {
	gid := q.get("GroupId")
	rules, err := f.group(gid)
	if err != nil {
		return nil, err
	}
	type change struct {
		r    *Rule
		desc string
	}
	var changes []change
	for _, u := range q.list("SecurityGroupRule") {
		id := u.get("SecurityGroupRuleId")
		i := slices.IndexFunc(rules, func(r *Rule) bool { return r.ID == id })
		if i < 0 {
			return nil, apiErr("InvalidSecurityGroupRuleId.NotFound", "The security group rule ID '%s' does not exist", id)
		}
		r := rules[i]
		cidr := u.get("SecurityGroupRule.CidrIpv4") + u.get("SecurityGroupRule.CidrIpv6")
		if c, err := canonical(cidr, strings.Contains(cidr, ":")); err != nil || c != r.CIDR ||
			u.get("SecurityGroupRule.IpProtocol") != r.Protocol || int32(atoi(u.get("SecurityGroupRule.FromPort"))) != r.FromPort {
			return nil, apiErr("InvalidParameterValue", "the fake only changes descriptions (rule %s)", id)
		}
		desc := u.get("SecurityGroupRule.Description")
		if err := ValidDescription(desc); err != nil {
			return nil, apiErr("InvalidParameterValue", "Invalid rule description. %v", err)
		}
		changes = append(changes, change{r, desc})
	}
	for _, c := range changes {
		c.r.Description = c.desc
	}
	return returnResp{true}, nil
}

func (f *Fake) list(id string) (*PrefixList, *APIError) {
	l, ok := f.lists[id]
	if !ok {
		return nil, apiErr("InvalidPrefixListID.NotFound", "The prefix list ID '%s' does not exist", id)
	}
	return l, nil
}

// poll advances a list in progress; each describe is one poll.
func (l *PrefixList) poll() {
	if !strings.HasSuffix(l.State, "-in-progress") {
		return
	}
	if l.pollsLeft > 0 {
		l.pollsLeft--
		return
	}
	l.complete()
}

func (l *PrefixList) complete() {
	l.State = strings.TrimSuffix(l.State, "-in-progress") + "-complete"
	if l.pending != nil {
		l.Entries, l.pending = l.pending, nil
		l.Version++
	}
}

func describeLists(f *Fake, q query) (any, *APIError) {
	ids := q.strings("PrefixListId")
	names := q.filters()["prefix-list-name"]
	var all []xmlList
	for _, id := range ids {
		if _, err := f.list(id); err != nil {
			return nil, err
		}
	}
	keys := slices.Sorted(maps.Keys(f.lists))
	for _, id := range keys {
		l := f.lists[id]
		if len(ids) > 0 && !slices.Contains(ids, id) || len(names) > 0 && !slices.Contains(names, l.Name) {
			continue
		}
		l.poll()
		all = append(all, toXMLList(l))
	}
	var out struct {
		Lists     []xmlList `xml:"prefixListSet>item"`
		NextToken string    `xml:"nextToken,omitempty"`
	}
	out.Lists, out.NextToken = page(f, q, all)
	return out, nil
}

func getEntries(f *Fake, q query) (any, *APIError) {
	l, err := f.list(q.get("PrefixListId"))
	if err != nil {
		return nil, err
	}
	var all []xmlEntry
	for _, e := range l.Entries {
		all = append(all, xmlEntry(e))
	}
	var out struct {
		Entries   []xmlEntry `xml:"entrySet>item"`
		NextToken string     `xml:"nextToken,omitempty"`
	}
	out.Entries, out.NextToken = page(f, q, all)
	return out, nil
}

func entries(q query, name string, family string, needDesc bool) ([]Entry, *APIError) {
	var out []Entry
	for _, e := range q.list(name) {
		c, err := canonical(e.get("Cidr"), family == "IPv6")
		if err != nil {
			return nil, apiErr("InvalidParameterValue", "CIDR %s is not a valid %s CIDR", e.get("Cidr"), family)
		}
		if err := ValidDescription(e.get("Description")); needDesc && err != nil {
			return nil, apiErr("InvalidParameterValue", "Invalid entry description. %v", err)
		}
		out = append(out, Entry{c, e.get("Description")})
	}
	return out, nil
}

func modifyList(f *Fake, q query) (any, *APIError) {
	l, err := f.list(q.get("PrefixListId"))
	if err != nil {
		return nil, err
	}
	if strings.HasSuffix(l.State, "-in-progress") {
		return nil, apiErr("IncorrectState", "The prefix list %s is in the %s state and cannot be modified.", l.ID, l.State)
	}
	add, err := entries(q, "AddEntry", l.Family, true)
	if err != nil {
		return nil, err
	}
	remove, err := entries(q, "RemoveEntry", l.Family, false)
	if err != nil {
		return nil, err
	}
	if len(add) > MaxEntriesPerCall || len(remove) > MaxEntriesPerCall {
		return nil, apiErr("InvalidParameterValue", "at most %d entries may be added or removed per request", MaxEntriesPerCall)
	}
	if q.has("MaxEntries") {
		if len(add)+len(remove) > 0 {
			return nil, apiErr("InvalidParameterCombination", "You cannot modify the entries and max entries of a prefix list in the same request.")
		}
		next := atoi(q.get("MaxEntries"))
		if next < len(l.Entries) || next > 1000 {
			return nil, apiErr("InvalidParameterValue", "MaxEntries %d: want %d..1000", next, len(l.Entries))
		}
		// EC2 refuses a size that takes a referencing group past its quota.
		for _, g := range f.referencedBy(l.ID) {
			for _, egress := range []bool{false, true} {
				if n := f.quotaUse(f.groups[g], egress, map[string]int{l.ID: next})[l.Family == "IPv6"]; n > f.RuleLimit {
					return nil, apiErr("PrefixListMaxEntriesExceeded", "The maximum number of rules per security group (%d) would be exceeded in %s (%d rules).", f.RuleLimit, g, n)
				}
			}
		}
		l.MaxEntries = next
		return struct {
			List xmlList `xml:"prefixList"`
		}{toXMLList(l)}, nil
	}
	if got := q.get("CurrentVersion"); got != fmt.Sprint(l.Version) {
		return nil, apiErr("PrefixListVersionMismatch", "The prefix list %s has version %d, not %s.", l.ID, l.Version, got)
	}
	// EC2 refuses a description-only change done as remove plus add.
	for _, e := range remove {
		if slices.ContainsFunc(add, func(x Entry) bool { return x.CIDR == e.CIDR }) {
			return nil, apiErr("InvalidParameterValue", "Request cannot contain Cidr %s in both AddPrefixListEntries and RemovePrefixListEntries", e.CIDR)
		}
	}
	next := slices.Clone(l.Entries)
	for _, e := range remove {
		i := slices.IndexFunc(next, func(x Entry) bool { return x.CIDR == e.CIDR })
		if i < 0 {
			return nil, apiErr("InvalidPrefixListModification", "The CIDR %s does not exist in %s.", e.CIDR, l.ID)
		}
		next = slices.Delete(next, i, i+1)
	}
	for _, e := range add {
		if slices.ContainsFunc(next, func(x Entry) bool { return x.CIDR == e.CIDR }) {
			return nil, apiErr("InvalidPrefixListModification", "The CIDR %s already exists in %s.", e.CIDR, l.ID)
		}
		next = append(next, e)
	}
	if len(next) > l.MaxEntries {
		return nil, apiErr("PrefixListMaxEntriesExceeded", "The prefix list %s would have %d entries, more than its max entries %d.", l.ID, len(next), l.MaxEntries)
	}
	l.pending, l.State, l.pollsLeft = next, "modify-in-progress", f.ModifyPolls
	if f.ModifyPolls == 0 {
		l.complete()
	}
	return struct {
		List xmlList `xml:"prefixList"`
	}{toXMLList(l)}, nil
}

func createList(f *Fake, q query) (any, *APIError) {
	family := q.get("AddressFamily")
	if family != "IPv4" && family != "IPv6" {
		return nil, apiErr("InvalidParameterValue", "AddressFamily %q", family)
	}
	max := atoi(q.get("MaxEntries"))
	if max < 1 || max > 1000 {
		return nil, apiErr("InvalidParameterValue", "MaxEntries %d: want 1..1000", max)
	}
	es, err := entries(q, "Entry", family, true)
	if err != nil {
		return nil, err
	}
	if len(es) > max {
		return nil, apiErr("PrefixListMaxEntriesExceeded", "%d entries, more than max entries %d", len(es), max)
	}
	l := &PrefixList{ID: f.id("pl"), Name: q.get("PrefixListName"), Family: family, MaxEntries: max,
		Tags: q.tags("prefix-list"), State: "create-in-progress", pending: append([]Entry{}, es...), pollsLeft: f.ModifyPolls}
	f.lists[l.ID] = l
	if f.ModifyPolls == 0 {
		l.complete()
	}
	return struct {
		List xmlList `xml:"prefixList"`
	}{toXMLList(l)}, nil
}

func deleteList(f *Fake, q query) (any, *APIError) {
	l, err := f.list(q.get("PrefixListId"))
	if err != nil {
		return nil, err
	}
	if gs := f.referencedBy(l.ID); len(gs) > 0 {
		return nil, apiErr("InvalidPrefixListModification", "The prefix list %s is referenced by security group %s.", l.ID, gs[0])
	}
	delete(f.lists, l.ID)
	return struct {
		List xmlList `xml:"prefixList"`
	}{toXMLList(l)}, nil
}

func createTags(f *Fake, q query) (any, *APIError) {
	for _, id := range q.strings("ResourceId") {
		for _, t := range q.list("Tag") {
			if l, ok := f.lists[id]; ok {
				if l.Tags == nil {
					l.Tags = map[string]string{}
				}
				l.Tags[t.get("Key")] = t.get("Value")
			}
		}
	}
	return returnResp{true}, nil
}
