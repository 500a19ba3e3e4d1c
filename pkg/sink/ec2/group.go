package ec2

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
)

// GroupOptions configure one security group (config, or
// --sink ec2:sg-0123?region=eu-west-1&rule_limit=100).
type GroupOptions struct {
	// GroupID is the security group, sg- and 8 or 17 hex digits.
	GroupID string `yaml:"group_id"`
	// RuleLimit is EC2's rules per group, per direction and per address
	// family; raise it only after AWS raised the quota.
	RuleLimit int `yaml:"rule_limit"`
	// PrefixLists is a list name: the group then allows the sets through
	// prefix lists NAME, NAME-2, … that it creates, tags and fills itself,
	// with one rule per direction, protocol, port and list instead of one
	// per CIDR. The sets routed to the group need the same direction,
	// protocol and ports.
	PrefixLists string `yaml:"prefix_lists"`
	// MaxEntries sizes each list of prefix_lists (0: 100; at most 1000). A
	// rule referencing a list counts as this many against rule_limit.
	MaxEntries int `yaml:"max_entries"`
	// MaxLists is how many lists prefix_lists may spread the sets over
	// (0: 1; at most 100).
	MaxLists int `yaml:"max_lists"`
	// Family is what prefix_lists hold, ipv4 or ipv6 (default: an existing
	// list's, else ipv4); the other family stays one rule per CIDR.
	Family     string `yaml:"family"`
	AWSOptions `yaml:",inline"`
}

// listOptions are the options of the prefix_lists series.
func (o GroupOptions) listOptions() PrefixListOptions {
	return PrefixListOptions{PrefixList: o.PrefixLists, Family: o.Family, MaxEntries: cmp.Or(o.MaxEntries, DefaultMaxEntries),
		MaxLists: cmp.Or(o.MaxLists, 1), RuleLimit: o.RuleLimit, AWSOptions: o.AWSOptions}
}

// DefaultRuleLimit is EC2's default quota of inbound or outbound rules.
const DefaultRuleLimit = 60

var groupIDRE = regexp.MustCompile(`^sg-[0-9a-f]{8,17}$`)

func defaultGroupOptions() GroupOptions { return GroupOptions{RuleLimit: DefaultRuleLimit} }

// GroupFactory registers the ec2 sink type.
var GroupFactory = sink.Factory{
	ArgKey:  "group_id",
	Help:    "ec2:sg-ID  EC2 security group rules (options: region, profile, role_arn, external_id, endpoint, rule_limit, prefix_lists=NAME with max_entries, max_lists and family to allow the sets through prefix lists the group fills, owner_id, tags, max_attempts, timeout)",
	Options: func() any { return defaultGroupOptions() },
	Open: func(spec sink.Spec, env sink.Env) (sink.Sink, error) {
		o := defaultGroupOptions()
		if err := spec.Decode(&o); err != nil {
			return nil, err
		}
		if err := o.check(spec, env); err != nil {
			return nil, err
		}
		cfg, err := Config(env, o.AWSOptions)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", spec.Origin, err)
		}
		return NewGroup(NewClient(cfg, o.Endpoint), cfg.Region, o, spec, env)
	},
}

func (o GroupOptions) check(spec sink.Spec, env sink.Env) error {
	if err := sink.CheckOptions(spec.Origin, o); err != nil {
		return err
	}
	if !groupIDRE.MatchString(o.GroupID) {
		return fmt.Errorf("%s: group_id %q: want sg- and 8 or 17 hex digits", spec.Origin, o.GroupID)
	}
	if o.RuleLimit < 1 {
		return fmt.Errorf("%s: rule_limit %d: want at least 1", spec.Origin, o.RuleLimit)
	}
	if o.PrefixLists == "" && (o.MaxEntries != 0 || o.MaxLists != 0 || o.Family != "") {
		return fmt.Errorf("%s: max_entries, max_lists and family size the lists of prefix_lists, which is not set", spec.Origin)
	}
	if o.PrefixLists != "" {
		if listIDRE.MatchString(o.PrefixLists) || strings.HasPrefix(o.PrefixLists, "pl-") {
			return fmt.Errorf("%s: prefix_lists %q: want a list name; the group creates, tags and fills the lists itself", spec.Origin, o.PrefixLists)
		}
		if err := o.listOptions().check(spec, env); err != nil {
			return err
		}
		// EC2 leaves & out of what a prefix-list reference's description
		// may hold.
		if owner, _ := o.validate(env, spec.Sets); strings.Contains(owner, "&") {
			return fmt.Errorf("%s: owner id %q: the description of a rule referencing a prefix list may not contain &", spec.Origin, owner)
		}
	}
	if _, err := o.validate(env, spec.Sets); err != nil {
		return fmt.Errorf("%s: %w", spec.Origin, err)
	}
	return nil
}

// Group is the security group sink. One value serves one target; its
// state lives only in the value, so targets run concurrently.
type Group struct {
	api    API
	id     string
	region string
	owner  string
	limit  int
	opts   AWSOptions
	log    *slog.Logger
	// lists is the prefix_lists series, nil without the option.
	lists *PrefixList
}

// NewGroup returns the sink for a client; tests pass a fake's client.
func NewGroup(api API, region string, o GroupOptions, spec sink.Spec, env sink.Env) (*Group, error) {
	if err := o.check(spec, env); err != nil {
		return nil, err
	}
	owner, _ := o.validate(env, spec.Sets)
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g := &Group{api: api, id: o.GroupID, region: region, owner: owner, limit: o.RuleLimit, opts: o.AWSOptions, log: log}
	if o.PrefixLists != "" {
		l, err := NewPrefixList(api, region, o.listOptions(), spec, env)
		if err != nil {
			return nil, err
		}
		g.lists = l
	}
	return g, nil
}

// Name identifies the target in plans.
func (g *Group) Name() string { return "ec2:" + g.region + "/" + g.id }

type ownedRule struct {
	id  string
	set string
}

// bucket is what EC2's rule quota counts separately.
type bucket struct {
	dir plan.Direction
	v6  bool
}

func (b bucket) String() string {
	if b.v6 {
		return b.dir.String() + " IPv6"
	}
	return b.dir.String() + " IPv4"
}

// groupSnapshot is one read of the group, handed back to Shape, Check and
// Apply in State.Snapshot and SinkPlan.Snapshot.
type groupSnapshot struct {
	owned   map[plan.Entry]ownedRule
	foreign map[plan.Entry]bool
	// others counts every rule that is not ours, which the quota counts
	// too; a rule referencing a prefix list counts as its MaxEntries.
	others map[bucket]int
	// series is what the prefix_lists lists hold (nil without the
	// option); refs are our rules referencing them, by rule id.
	series *seriesSnapshot
	refs   map[listRef]string
	// strays are our rules referencing a list outside the series, which
	// Apply revokes once what replaces them is in place; strayCount is
	// what they count against the quota until then.
	strays     map[plan.Direction][]string
	strayCount map[bucket]int
	// theirRefs are others' rules referencing a list of our series, by
	// list id: they count as its MaxEntries after any growth.
	theirRefs map[string][]plan.Direction
}

func (s *groupSnapshot) present(k plan.Entry) bool {
	_, ok := s.owned[k]
	return ok || s.foreign[k]
}

// Current reads every rule of the group. Rules with our marker are owned;
// identical rules without it are foreign and cover the need.
func (g *Group) Current(ctx context.Context) (plan.State, error) {
	ctx, cancel := context.WithTimeout(ctx, g.opts.CallTimeout())
	defer cancel()
	snap, st, err := g.read(ctx)
	if err != nil {
		return plan.State{}, err
	}
	st.Snapshot = snap
	return st, nil
}

func (g *Group) read(ctx context.Context) (*groupSnapshot, plan.State, error) {
	snap := &groupSnapshot{owned: map[plan.Entry]ownedRule{}, foreign: map[plan.Entry]bool{}, others: map[bucket]int{},
		refs: map[listRef]string{}, strays: map[plan.Direction][]string{}, strayCount: map[bucket]int{},
		theirRefs: map[string][]plan.Direction{}}
	var st plan.State
	in := &ec2.DescribeSecurityGroupRulesInput{
		Filters:    []types.Filter{{Name: aws.String("group-id"), Values: []string{g.id}}},
		MaxResults: aws.Int32(1000),
	}
	n := 0
	// lists are the prefix lists the group's rules reference, by direction.
	lists := map[string][]plan.Direction{}
	var mine []types.SecurityGroupRule
	pages := ec2.NewDescribeSecurityGroupRulesPaginator(g.api, in)
	for pages.HasMorePages() {
		out, err := pages.NextPage(ctx)
		if err != nil {
			return nil, st, wrap("DescribeSecurityGroupRules", err)
		}
		for _, r := range out.SecurityGroupRules {
			n++
			if id := aws.ToString(r.PrefixListId); id != "" && aws.ToString(r.GroupId) == g.id {
				if g.ownRef(r) {
					mine = append(mine, r)
					continue
				}
				dir := plan.Ingress
				if aws.ToBool(r.IsEgress) {
					dir = plan.Egress
				}
				lists[id] = append(lists[id], dir)
				continue
			}
			g.classify(snap, &st, r)
		}
	}
	unlabelled := len(st.Unlabelled)
	strays, err := g.readSeries(ctx, snap, &st, mine)
	if err != nil {
		return nil, st, err
	}
	if snap.series != nil {
		// Someone else's references to our lists grow with them.
		for _, ls := range snap.series.lists {
			if dirs, ok := lists[ls.id]; ok && ls.ours {
				snap.theirRefs[ls.id] = dirs
				delete(lists, ls.id)
			}
		}
	}
	if err := g.countLists(ctx, snap.others, lists); err != nil {
		return nil, st, err
	}
	if err := g.countLists(ctx, snap.strayCount, strays); err != nil {
		return nil, st, err
	}
	if n == 0 {
		// A filter on a missing group matches nothing; say so now rather
		// than planning to fill it.
		if _, err := g.api.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{GroupIds: []string{g.id}}); err != nil {
			return nil, st, wrap("DescribeSecurityGroups", err)
		}
	}
	st.Owned = plan.Sort(st.Owned)
	st.Foreign = plan.Sort(st.Foreign)
	st.Unlabelled = plan.Sort(st.Unlabelled)
	if n := unlabelled; n > 0 {
		st.Drift = append(st.Drift, fmt.Sprintf("%d rules carry our marker with a set that no longer reads (description edited by hand); every routed set holds them until they are relabelled", n))
	}
	return snap, st, nil
}

func (g *Group) classify(snap *groupSnapshot, st *plan.State, r types.SecurityGroupRule) {
	if aws.ToString(r.GroupId) != g.id {
		return
	}
	e, ok := ruleEntry(r)
	b := bucket{dir: plan.Ingress, v6: r.CidrIpv6 != nil}
	if aws.ToBool(r.IsEgress) {
		b.dir = plan.Egress
	}
	if !ok {
		snap.others[b]++
		return
	}
	desc := aws.ToString(r.Description)
	set, mine := sink.ParseMarker(g.owner, desc)
	unread := !mine && sink.UnreadableMarker(g.owner, desc)
	if _, dup := snap.owned[e]; !dup && (mine || unread) {
		// An unreadable label is kept as set "": the rule is ours, the
		// plan gives it to a routed set, and Apply relabels it.
		snap.owned[e] = ownedRule{id: aws.ToString(r.SecurityGroupRuleId), set: set}
		if unread {
			st.Unlabelled = append(st.Unlabelled, e)
			return
		}
		e.Set = set
		st.Owned = append(st.Owned, e)
		return
	}
	snap.others[b]++
	if !snap.foreign[e] {
		snap.foreign[e] = true
		st.Foreign = append(st.Foreign, e)
	}
}

// countLists counts each rule referencing a prefix list as the list's
// MaxEntries rules of its family, as EC2 counts it against the quota.
func (g *Group) countLists(ctx context.Context, count map[bucket]int, lists map[string][]plan.Direction) error {
	if len(lists) == 0 {
		return nil
	}
	out, err := g.api.DescribeManagedPrefixLists(ctx, &ec2.DescribeManagedPrefixListsInput{PrefixListIds: slices.Sorted(maps.Keys(lists))})
	if err != nil {
		return wrap("DescribeManagedPrefixLists", err)
	}
	for _, pl := range out.PrefixLists {
		for _, dir := range lists[aws.ToString(pl.PrefixListId)] {
			count[bucket{dir: dir, v6: aws.ToString(pl.AddressFamily) == "IPv6"}] += int(aws.ToInt32(pl.MaxEntries))
		}
	}
	return nil
}

// ruleEntry maps a rule to the entry it would be, if it is one we could
// have written: tcp or udp, one port, one CIDR.
func ruleEntry(r types.SecurityGroupRule) (plan.Entry, bool) {
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
		return plan.Entry{}, false
	}
	cidr := aws.ToString(r.CidrIpv4)
	if r.CidrIpv6 != nil {
		cidr = aws.ToString(r.CidrIpv6)
	}
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return plan.Entry{}, false
	}
	dir := plan.Ingress
	if aws.ToBool(r.IsEgress) {
		dir = plan.Egress
	}
	return plan.Entry{Prefix: p.Masked(), Direction: dir, Protocol: protocol, Port: uint16(from)}, true
}

// Shape gives each rule to one set (plan.Claim): a group holds one rule
// per direction, protocol, port and CIDR, and the catalog's sets share
// egress tcp/443. A rule moves between sets by a description rewrite.
func (g *Group) Shape(desired []plan.DesiredSet, current plan.State) ([]plan.DesiredSet, error) {
	if g.lists != nil {
		return g.shapeLists(desired, current)
	}
	held := map[plan.Entry]string{}
	if snap, ok := current.Snapshot.(*groupSnapshot); ok {
		for k, r := range snap.owned {
			if r.set != "" { // unlabelled: held by no set yet
				held[k] = r.set
			}
		}
	}
	out, conflicts := plan.Claim(desired, held, plan.RelabelInPlace)
	if len(conflicts) > 0 {
		return out, &plan.GuardError{Guard: plan.GuardEC2Overlap, Sink: g.Name(), Msg: conflicts[0] +
			"; a group holds one rule per address and port, so give the sets the same ports or send them to different groups"}
	}
	return out, nil
}

// Check refuses a plan the group cannot hold: more rules per direction and
// family than rule_limit, counting the rules that are not ours.
func (g *Group) Check(p plan.SinkPlan) error {
	snap, _ := p.Snapshot.(*groupSnapshot)
	if g.lists != nil {
		if snap == nil || snap.series == nil {
			// A plan made without a read (a saved plan): Apply reads.
			return nil
		}
		return g.checkLists(snap, p)
	}
	ours := map[bucket]int{}
	seen := map[plan.Entry]bool{}
	for _, e := range p.Result() {
		k := plan.Key(e)
		if seen[k] || snap != nil && snap.foreign[k] {
			continue
		}
		seen[k] = true
		ours[bucket{dir: e.Direction, v6: e.Prefix.Addr().Is6()}]++
	}
	others := map[bucket]int{}
	if snap != nil {
		others = maps.Clone(snap.others)
		for b, n := range snap.strayCount {
			others[b] += n
		}
	}
	for _, b := range []bucket{{plan.Ingress, false}, {plan.Ingress, true}, {plan.Egress, false}, {plan.Egress, true}} {
		if n := ours[b] + others[b]; n > g.limit {
			return &plan.GuardError{Guard: plan.GuardEC2RuleLimit, Sink: p.Sink, Msg: fmt.Sprintf(
				"the group would hold %d %s rules (%d ours, %d others), more than rule_limit %d; use a managed prefix list (--sink ec2-prefix-list:NAME, referenced by one rule of the group) or raise the AWS quota and rule_limit",
				n, b, ours[b], others[b], g.limit)}
		}
	}
	return nil
}

type change struct {
	k   plan.Entry
	set string
}

// Apply authorizes first, relabels, then revokes: per direction one
// authorize call with every new rule and one revoke call by rule id, so
// no wanted address is ever missing.
func (g *Group) Apply(ctx context.Context, p plan.SinkPlan) error {
	if err := sink.CheckPlan(p); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, g.opts.CallTimeout())
	defer cancel()
	snap, _ := p.Snapshot.(*groupSnapshot)
	if snap == nil || g.lists != nil && snap.series == nil {
		var err error
		if snap, _, err = g.read(ctx); err != nil {
			return err
		}
	}
	if g.lists != nil {
		if err := g.checkLists(snap, p); err != nil {
			return err
		}
		return g.applyLists(ctx, snap, p)
	}
	return g.applyRules(ctx, snap, p, func(plan.Entry) bool { return false }, snap.strays)
}

// applyRules makes the plan's changes to rules per CIDR, leaving out the
// entries inLists says the prefix lists hold, and last revokes extra (our
// rules that something else now replaces).
func (g *Group) applyRules(ctx context.Context, snap *groupSnapshot, p plan.SinkPlan, inLists func(plan.Entry) bool, extra map[plan.Direction][]string) error {
	adds := map[plan.Direction][]change{}
	var relabel []change
	added := map[plan.Entry]bool{}
	for _, e := range p.Add {
		k := plan.Key(e)
		if err := CheckDescription(sink.Marker(g.owner, e.Set)); err != nil {
			return fmt.Errorf("set %q: %w", e.Set, err)
		}
		if added[k] || inLists(e) {
			continue
		}
		added[k] = true
		if r, ok := snap.owned[k]; ok {
			if r.set != e.Set {
				relabel = append(relabel, change{k, e.Set})
			}
			continue
		}
		if !snap.foreign[k] {
			adds[e.Direction] = append(adds[e.Direction], change{k, e.Set})
		}
	}
	// A kept rule whose label did not read gets its set's label back.
	for _, e := range p.Keep {
		k := plan.Key(e)
		if r, ok := snap.owned[k]; ok && r.set == "" && !added[k] && !inLists(e) {
			added[k] = true
			relabel = append(relabel, change{k, e.Set})
		}
	}
	revokes := map[plan.Direction][]string{}
	for _, e := range p.Remove {
		k := plan.Key(e)
		if r, ok := snap.owned[k]; ok && (r.set == e.Set || r.set == "") && !added[k] && !inLists(e) {
			revokes[e.Direction] = append(revokes[e.Direction], r.id)
		}
	}
	for dir, ids := range extra {
		revokes[dir] = append(revokes[dir], ids...)
	}
	for _, dir := range []plan.Direction{plan.Ingress, plan.Egress} {
		if err := g.authorize(ctx, dir, adds[dir]); err != nil {
			return err
		}
	}
	if err := g.relabel(ctx, snap, relabel); err != nil {
		return err
	}
	for _, dir := range []plan.Direction{plan.Ingress, plan.Egress} {
		if err := g.revoke(ctx, dir, revokes[dir]); err != nil {
			return err
		}
	}
	return nil
}

// authorize adds rules in one call.
func (g *Group) authorize(ctx context.Context, dir plan.Direction, cs []change) error {
	return authorizeMissing(ctx, g, dir, "rule", cs, g.permissions,
		func(snap *groupSnapshot, c change) bool { return snap.present(c.k) })
}

// authorizeMissing adds what perms makes of items in one call, each rule
// tagged as ours. A duplicate means the group changed since we read it
// (another run, or a retried request that had succeeded): re-read, keep
// the items present does not find, and try again, three calls at most.
func authorizeMissing[T any](ctx context.Context, g *Group, dir plan.Direction, what string, items []T,
	perms func([]T) []types.IpPermission, present func(*groupSnapshot, T) bool) error {
	op := "AuthorizeSecurityGroupIngress"
	if dir == plan.Egress {
		op = "AuthorizeSecurityGroupEgress"
	}
	for attempt := 1; len(items) > 0; attempt++ {
		err := g.authorizeTagged(ctx, dir, perms(items))
		if err == nil {
			return nil
		}
		if code(err) != "InvalidPermission.Duplicate" || attempt == 3 {
			return wrap(op, err)
		}
		g.log.Info(what+" already exists; re-reading the group", "sink", g.Name(), "err", wrap(op, err).Error())
		snap, _, rerr := g.read(ctx)
		if rerr != nil {
			return rerr
		}
		items = slices.DeleteFunc(items, func(it T) bool { return present(snap, it) })
	}
	return nil
}

// permissions groups rules by protocol and port, one permission each.
func (g *Group) permissions(cs []change) []types.IpPermission {
	slices.SortFunc(cs, func(a, b change) int { return plan.Compare(a.k, b.k) })
	type pp struct {
		proto plan.Protocol
		port  uint16
	}
	idx := map[pp]int{}
	var out []types.IpPermission
	for _, c := range cs {
		k := pp{c.k.Protocol, c.k.Port}
		i, ok := idx[k]
		if !ok {
			i = len(out)
			idx[k] = i
			out = append(out, types.IpPermission{IpProtocol: aws.String(k.proto.String()), FromPort: aws.Int32(int32(k.port)), ToPort: aws.Int32(int32(k.port))})
		}
		desc := aws.String(sink.Marker(g.owner, c.set))
		if c.k.Prefix.Addr().Is6() {
			out[i].Ipv6Ranges = append(out[i].Ipv6Ranges, types.Ipv6Range{CidrIpv6: aws.String(c.k.Prefix.String()), Description: desc})
		} else {
			out[i].IpRanges = append(out[i].IpRanges, types.IpRange{CidrIp: aws.String(c.k.Prefix.String()), Description: desc})
		}
	}
	return out
}

// relabel hands a rule from one set to another by rewriting its
// description, which never opens a gap the way revoke and re-add would.
func (g *Group) relabel(ctx context.Context, snap *groupSnapshot, cs []change) error {
	if len(cs) == 0 {
		return nil
	}
	slices.SortFunc(cs, func(a, b change) int { return plan.Compare(a.k, b.k) })
	updates := make([]types.SecurityGroupRuleUpdate, 0, len(cs))
	for _, c := range cs {
		req := &types.SecurityGroupRuleRequest{IpProtocol: aws.String(c.k.Protocol.String()), FromPort: aws.Int32(int32(c.k.Port)),
			ToPort: aws.Int32(int32(c.k.Port)), Description: aws.String(sink.Marker(g.owner, c.set))}
		if c.k.Prefix.Addr().Is6() {
			req.CidrIpv6 = aws.String(c.k.Prefix.String())
		} else {
			req.CidrIpv4 = aws.String(c.k.Prefix.String())
		}
		updates = append(updates, types.SecurityGroupRuleUpdate{SecurityGroupRuleId: aws.String(snap.owned[c.k].id), SecurityGroupRule: req})
	}
	_, err := g.api.ModifySecurityGroupRules(ctx, &ec2.ModifySecurityGroupRulesInput{GroupId: aws.String(g.id), SecurityGroupRules: updates})
	return wrap("ModifySecurityGroupRules", err)
}

// revoke removes our rules by id in one call. A rule already gone is
// success: re-read and revoke whatever of ours is still there.
func (g *Group) revoke(ctx context.Context, dir plan.Direction, ids []string) error {
	op := "RevokeSecurityGroupIngress"
	if dir == plan.Egress {
		op = "RevokeSecurityGroupEgress"
	}
	sort.Strings(ids)
	for attempt := 1; len(ids) > 0; attempt++ {
		var err error
		if dir == plan.Egress {
			_, err = g.api.RevokeSecurityGroupEgress(ctx, &ec2.RevokeSecurityGroupEgressInput{GroupId: aws.String(g.id), SecurityGroupRuleIds: ids})
		} else {
			_, err = g.api.RevokeSecurityGroupIngress(ctx, &ec2.RevokeSecurityGroupIngressInput{GroupId: aws.String(g.id), SecurityGroupRuleIds: ids})
		}
		if err == nil {
			return nil
		}
		if c := code(err); c != "InvalidPermission.NotFound" && c != "InvalidSecurityGroupRuleId.NotFound" || attempt == 3 {
			return wrap(op, err)
		}
		g.log.Info("rule already revoked; re-reading the group", "sink", g.Name(), "err", wrap(op, err).Error())
		snap, _, rerr := g.read(ctx)
		if rerr != nil {
			return rerr
		}
		still := map[string]bool{}
		for _, r := range snap.owned {
			still[r.id] = true
		}
		for _, id := range snap.refs {
			still[id] = true
		}
		for _, ids := range snap.strays {
			for _, id := range ids {
				still[id] = true
			}
		}
		ids = slices.DeleteFunc(ids, func(id string) bool { return !still[id] })
	}
	return nil
}

func tagList(m map[string]string) []types.Tag {
	out := make([]types.Tag, 0, len(m))
	for k, v := range m {
		out = append(out, types.Tag{Key: aws.String(k), Value: aws.String(v)})
	}
	slices.SortFunc(out, func(a, b types.Tag) int { return cmp.Compare(*a.Key, *b.Key) })
	return out
}

// authorizeTagged adds perms to the group in dir, each rule tagged as ours.
func (g *Group) authorizeTagged(ctx context.Context, dir plan.Direction, perms []types.IpPermission) error {
	spec := []types.TagSpecification{{ResourceType: types.ResourceTypeSecurityGroupRule, Tags: tagList(tags(g.owner, g.opts.Tags))}}
	var err error
	if dir == plan.Egress {
		_, err = g.api.AuthorizeSecurityGroupEgress(ctx, &ec2.AuthorizeSecurityGroupEgressInput{GroupId: aws.String(g.id), IpPermissions: perms, TagSpecifications: spec})
	} else {
		_, err = g.api.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{GroupId: aws.String(g.id), IpPermissions: perms, TagSpecifications: spec})
	}
	return err
}
