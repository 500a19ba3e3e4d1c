package ec2

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/pdsafelist/pdsafelist/pkg/clock"
	"github.com/pdsafelist/pdsafelist/pkg/oneline"
	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
)

// PrefixListOptions configure one customer-managed prefix list (config, or
// --sink ec2-prefix-list:pl-0123 or ec2-prefix-list:NAME).
type PrefixListOptions struct {
	// PrefixList is a pl- id, or a name: a list of that name is created
	// when missing.
	PrefixList string `yaml:"prefix_list"`
	// Family is ipv4 or ipv6; a list holds one family, the other is left
	// out. An existing list's family wins when this is empty.
	Family string `yaml:"family"`
	// MaxEntries sizes a list we create, and a list of ours grows up to it
	// when a set needs the room. A group rule referencing the list counts
	// as this many rules against the group's quota.
	MaxEntries int `yaml:"max_entries"`
	// MaxLists lets a set larger than MaxEntries spread over lists NAME,
	// NAME-2, … NAME-MaxLists, each created and tagged as ours; every
	// rule that should allow the set must reference each of them. 1, the
	// default, refuses a set that does not fit one list.
	MaxLists int `yaml:"max_lists"`
	// RuleLimit is the rule quota of the security groups that reference
	// our lists: a list of ours smaller than MaxEntries grows only as far
	// as every referencing group stays within it, as a reference counts
	// as the list's MaxEntries rules.
	RuleLimit  int `yaml:"rule_limit"`
	AWSOptions `yaml:",inline"`
}

// Limits of ModifyManagedPrefixList.
const (
	MaxEntriesPerCall = 100
	DefaultMaxEntries = 100
	// MaxLists is the regional quota of customer-managed prefix lists.
	MaxLists     = 100
	maxConflicts = 5
)

var (
	listIDRE   = regexp.MustCompile(`^pl-[0-9a-f]{8,17}$`)
	listNameRE = regexp.MustCompile(`^[a-zA-Z0-9 ._\-:/()#,@\[\]+=&;{}!$*]{1,255}$`)
)

func defaultPrefixListOptions() PrefixListOptions {
	return PrefixListOptions{MaxEntries: DefaultMaxEntries, MaxLists: 1, RuleLimit: DefaultRuleLimit}
}

// PrefixListFactory registers the ec2-prefix-list sink type.
var PrefixListFactory = sink.Factory{
	ArgKey:  "prefix_list",
	Help:    "ec2-prefix-list:pl-ID|NAME  EC2 managed prefix list, created by name if missing (options: family=ipv4|ipv6, max_entries, max_lists=N to spread a large set over NAME, NAME-2, …, rule_limit, and the ec2 AWS options)",
	Options: func() any { return defaultPrefixListOptions() },
	Open: func(spec sink.Spec, env sink.Env) (sink.Sink, error) {
		o := defaultPrefixListOptions()
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
		return NewPrefixList(NewClient(cfg, o.Endpoint), cfg.Region, o, spec, env)
	},
}

func (o PrefixListOptions) check(spec sink.Spec, env sink.Env) error {
	if err := sink.CheckOptions(spec.Origin, o); err != nil {
		return err
	}
	if !listIDRE.MatchString(o.PrefixList) && (strings.HasPrefix(o.PrefixList, "pl-") || !listNameRE.MatchString(o.PrefixList)) {
		return fmt.Errorf("%s: prefix_list %q: want a pl- id or a list name", spec.Origin, o.PrefixList)
	}
	if strings.HasPrefix(o.PrefixList, "com.amazonaws.") {
		return fmt.Errorf("%s: prefix_list %q is AWS-managed and cannot be changed", spec.Origin, o.PrefixList)
	}
	if _, err := family(o.Family); err != nil {
		return fmt.Errorf("%s: %w", spec.Origin, err)
	}
	if o.MaxEntries < 1 || o.MaxEntries > 1000 {
		return fmt.Errorf("%s: max_entries %d: want 1 to 1000", spec.Origin, o.MaxEntries)
	}
	if o.RuleLimit < 0 {
		return fmt.Errorf("%s: rule_limit %d: want at least 1", spec.Origin, o.RuleLimit)
	}
	switch {
	case o.MaxLists < 0 || o.MaxLists > MaxLists:
		return fmt.Errorf("%s: max_lists %d: want 1 to %d", spec.Origin, o.MaxLists, MaxLists)
	case o.MaxLists > 1 && listIDRE.MatchString(o.PrefixList):
		return fmt.Errorf("%s: max_lists %d needs a list name, not the id %s: the extra lists are found by name", spec.Origin, o.MaxLists, o.PrefixList)
	case o.MaxLists > 1 && len(listName(o.PrefixList, o.MaxLists-1)) > 255:
		return fmt.Errorf("%s: prefix_list %q: too long for numbered lists (255 characters with the -N suffix)", spec.Origin, o.PrefixList)
	}
	if _, err := o.validate(env, spec.Sets); err != nil {
		return fmt.Errorf("%s: %w", spec.Origin, err)
	}
	return nil
}

func family(s string) (string, error) {
	switch strings.ToLower(s) {
	case "":
		return "", nil
	case "ipv4":
		return "IPv4", nil
	case "ipv6":
		return "IPv6", nil
	}
	return "", fmt.Errorf("family %q: want ipv4 or ipv6", s)
}

// PrefixList is the managed prefix list sink: one list, or with max_lists
// a numbered series of them read and written as one.
type PrefixList struct {
	api    API
	ref    string
	byID   bool
	family string
	max    int
	lists  int
	quota  int
	region string
	owner  string
	opts   AWSOptions
	log    *slog.Logger
	// sleep waits between polls; tests replace it.
	sleep     func(context.Context, time.Duration) error
	firstPoll time.Duration
	maxPoll   time.Duration
}

// NewPrefixList returns the sink for a client; tests pass a fake's client.
func NewPrefixList(api API, region string, o PrefixListOptions, spec sink.Spec, env sink.Env) (*PrefixList, error) {
	if err := o.check(spec, env); err != nil {
		return nil, err
	}
	owner, _ := o.validate(env, spec.Sets)
	fam, _ := family(o.Family)
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &PrefixList{api: api, ref: o.PrefixList, byID: listIDRE.MatchString(o.PrefixList), family: fam, max: o.MaxEntries,
		lists: max(o.MaxLists, 1), quota: cmp.Or(o.RuleLimit, DefaultRuleLimit), region: region, owner: owner, opts: o.AWSOptions, log: log,
		sleep: clock.Sleep, firstPoll: 250 * time.Millisecond, maxPoll: 5 * time.Second}, nil
}

// Name identifies the target in plans.
func (l *PrefixList) Name() string { return "ec2-prefix-list:" + l.region + "/" + l.ref }

// listName is the name of the i-th list of a series: NAME, NAME-2, ….
func listName(ref string, i int) string {
	if i == 0 {
		return ref
	}
	return fmt.Sprintf("%s-%d", ref, i+1)
}

// listSnapshot is one list as read; id is empty when it does not exist.
type listSnapshot struct {
	id         string
	name       string
	version    int64
	maxEntries int
	family     string
	// ours: tagged as created by this owner, so it may be deleted once
	// empty and unreferenced.
	ours    bool
	owned   map[netip.Prefix]string
	foreign map[netip.Prefix]bool
	// grow is how many entries MaxEntries may still grow by: up to the
	// configured max_entries, as far as every group referencing the list
	// stays within its rule quota; limit says which group stops it.
	grow  int
	limit string
}

func (s *listSnapshot) size() int { return len(s.owned) + len(s.foreign) }

// seriesSnapshot is what Current read: one list per slot of the series.
type seriesSnapshot struct {
	lists  []*listSnapshot
	family string
}

func (s *seriesSnapshot) present(p netip.Prefix) bool {
	for _, ls := range s.lists {
		if _, ok := ls.owned[p]; ok || ls.foreign[p] {
			return true
		}
	}
	return false
}

func (s *seriesSnapshot) clone() *seriesSnapshot {
	cp := &seriesSnapshot{family: s.family}
	for _, ls := range s.lists {
		c := *ls
		c.owned, c.foreign = maps.Clone(ls.owned), maps.Clone(ls.foreign)
		cp.lists = append(cp.lists, &c)
	}
	return cp
}

// Current reads every list of the series at its current version.
func (l *PrefixList) Current(ctx context.Context) (plan.State, error) {
	ctx, cancel := context.WithTimeout(ctx, l.opts.CallTimeout())
	defer cancel()
	snap, st, err := l.read(ctx)
	if err != nil {
		return plan.State{}, err
	}
	for i, ls := range snap.lists {
		switch {
		case ls.id == "" || !ls.ours:
		case i > 0 && ls.size() == 0:
			// An empty extra list left by an earlier shrink is retired
			// when no group references it.
			groups, err := l.referencing(ctx, ls.id)
			if err != nil {
				return plan.State{}, err
			}
			if len(groups) == 0 {
				st.Drift = append(st.Drift, fmt.Sprintf("prefix list %s (%s) is empty and no security group references it; delete it", ls.name, ls.id))
			}
		case ls.maxEntries < l.max:
			if err := l.headroom(ctx, ls); err != nil {
				return plan.State{}, err
			}
		}
	}
	st.Snapshot = snap
	return st, nil
}

func (l *PrefixList) read(ctx context.Context) (*seriesSnapshot, plan.State, error) {
	var st plan.State
	infos, err := l.find(ctx)
	if err != nil {
		return nil, st, err
	}
	snap := &seriesSnapshot{family: l.family}
	for _, info := range infos {
		if info != nil && snap.family == "" {
			snap.family = aws.ToString(info.AddressFamily)
		}
	}
	if snap.family == "" {
		snap.family = "IPv4"
	}
	for i, info := range infos {
		ls := &listSnapshot{name: listName(l.ref, i), owned: map[netip.Prefix]string{}, foreign: map[netip.Prefix]bool{}, maxEntries: l.max, family: snap.family}
		snap.lists = append(snap.lists, ls)
		if info == nil {
			continue
		}
		if err := l.readList(ctx, ls, info, &st); err != nil {
			return nil, st, err
		}
		if ls.family != snap.family {
			if l.family == "" {
				return nil, st, fmt.Errorf("%s holds %s, %s holds %s; one series holds one family", snap.lists[0].id, snap.family, ls.id, ls.family)
			}
			return nil, st, fmt.Errorf("%s holds %s, the sink is configured for %s", ls.id, ls.family, l.family)
		}
	}
	if snap.lists[0].id == "" {
		st.Drift = []string{fmt.Sprintf("prefix list %q does not exist; create it (%s, max %d entries)", l.ref, snap.family, l.max)}
	}
	st.Owned = plan.Sort(st.Owned)
	st.Foreign = plan.Sort(st.Foreign)
	st.Unlabelled = plan.Sort(st.Unlabelled)
	return snap, st, nil
}

// readList fills ls from the list info describes, waiting out a change in
// progress, and adds its entries to st.
func (l *PrefixList) readList(ctx context.Context, ls *listSnapshot, info *types.ManagedPrefixList, st *plan.State) error {
	ls.id = aws.ToString(info.PrefixListId)
	ls.name = aws.ToString(info.PrefixListName)
	ls.family = aws.ToString(info.AddressFamily)
	ls.maxEntries = int(aws.ToInt32(info.MaxEntries))
	ls.ours = taggedOurs(info.Tags, l.owner)
	if strings.HasSuffix(string(info.State), "-in-progress") {
		var err error
		if info, err = l.wait(ctx, ls.id, string(info.State)); err != nil {
			return err
		}
	}
	ls.version = aws.ToInt64(info.Version)
	pages := ec2.NewGetManagedPrefixListEntriesPaginator(l.api, &ec2.GetManagedPrefixListEntriesInput{
		PrefixListId: aws.String(ls.id), MaxResults: aws.Int32(100)})
	for pages.HasMorePages() {
		out, err := pages.NextPage(ctx)
		if err != nil {
			return wrap("GetManagedPrefixListEntries", err)
		}
		for _, e := range out.Entries {
			p, err := netip.ParsePrefix(aws.ToString(e.Cidr))
			if err != nil {
				continue
			}
			p = p.Masked()
			desc := aws.ToString(e.Description)
			if set, mine := sink.ParseMarker(l.owner, desc); mine {
				ls.owned[p] = set
				st.Owned = append(st.Owned, plan.Entry{Set: set, Prefix: p})
			} else if sink.UnreadableMarker(l.owner, desc) {
				// Ours with a label edited by hand: set "", for the plan
				// to give to a routed set. It keeps the edited label, as
				// a relabel here would remove the address for a moment.
				ls.owned[p] = ""
				st.Unlabelled = append(st.Unlabelled, plan.Entry{Prefix: p})
			} else if !ls.foreign[p] {
				ls.foreign[p] = true
				st.Foreign = append(st.Foreign, plan.Entry{Prefix: p})
			}
		}
	}
	return nil
}

// taggedOurs says whether a list carries the tags create gives it, with
// this owner's id (none when the owner is empty).
func taggedOurs(ts []types.Tag, owner string) bool {
	got := map[string]string{}
	for _, t := range ts {
		got[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return got[ManagedTag] == "managed" && got[ManagedTag+":owner"] == owner
}

// find describes the series, one entry per slot (nil where no list has
// that name): by id, or by name among the customer-managed lists (EC2 also
// returns AWS-managed ones), in one call.
func (l *PrefixList) find(ctx context.Context) ([]*types.ManagedPrefixList, error) {
	in := &ec2.DescribeManagedPrefixListsInput{}
	names := make([]string, l.lists)
	for i := range names {
		names[i] = listName(l.ref, i)
	}
	if l.byID {
		in.PrefixListIds = []string{l.ref}
	} else {
		in.Filters = []types.Filter{{Name: aws.String("prefix-list-name"), Values: names}}
	}
	found := make([][]types.ManagedPrefixList, l.lists)
	pages := ec2.NewDescribeManagedPrefixListsPaginator(l.api, in)
	for pages.HasMorePages() {
		out, err := pages.NextPage(ctx)
		if err != nil {
			return nil, wrap("DescribeManagedPrefixLists", err)
		}
		for _, pl := range out.PrefixLists {
			// A deleted list stays visible for a while, as moto keeps it.
			if aws.ToString(pl.OwnerId) == "AWS" || strings.HasPrefix(string(pl.State), "delete-") {
				continue
			}
			if l.byID {
				found[0] = append(found[0], pl)
			} else if i := slices.Index(names, aws.ToString(pl.PrefixListName)); i >= 0 {
				found[i] = append(found[i], pl)
			}
		}
	}
	out := make([]*types.ManagedPrefixList, l.lists)
	for i, f := range found {
		switch {
		case len(f) == 0 && l.byID:
			return nil, fmt.Errorf("prefix list %s not found", l.ref)
		case len(f) > 1 && i == 0:
			return nil, fmt.Errorf("%d prefix lists are named %q; configure one by its pl- id", len(f), names[i])
		case len(f) > 1:
			return nil, fmt.Errorf("%d prefix lists are named %q; which one is ours cannot be told: delete the extra one", len(f), names[i])
		case len(f) == 1:
			out[i] = &f[0]
		}
	}
	return out, nil
}

// wait polls until the list leaves *-in-progress, with backoff, until the
// context's deadline.
func (l *PrefixList) wait(ctx context.Context, id, state string) (*types.ManagedPrefixList, error) {
	delay := l.firstPoll
	for {
		out, err := l.api.DescribeManagedPrefixLists(ctx, &ec2.DescribeManagedPrefixListsInput{PrefixListIds: []string{id}})
		if err != nil {
			if ctx.Err() != nil {
				// The deadline can end a poll as well as the sleep between.
				return nil, fmt.Errorf("waiting for prefix list %s to leave %s: %w", id, state, ctx.Err())
			}
			return nil, wrap("DescribeManagedPrefixLists", err)
		}
		if len(out.PrefixLists) != 1 {
			return nil, fmt.Errorf("prefix list %s vanished", id)
		}
		pl := out.PrefixLists[0]
		state = string(pl.State)
		switch {
		case strings.HasSuffix(state, "-complete"):
			return &pl, nil
		case strings.HasSuffix(state, "-failed"):
			return nil, fmt.Errorf("prefix list %s is %s: %s", id, state, oneline.String(aws.ToString(pl.StateMessage)))
		}
		if err := l.sleep(ctx, delay); err != nil {
			return nil, fmt.Errorf("waiting for prefix list %s to leave %s: %w", id, state, err)
		}
		delay = min(2*delay, l.maxPoll)
	}
}

// Shape keeps one family, and drops ports and direction, which a list does
// not hold; each prefix goes to one set (plan.Claim), as an entry's CIDR is
// unique. An entry keeps its label while any set wants it: EC2 refuses a
// CIDR in both AddEntries and RemoveEntries of one call and adding a CIDR
// the list holds, so a relabel would take two versions with the address
// missing in between, a gap in every group that references the list.
func (l *PrefixList) Shape(desired []plan.DesiredSet, current plan.State) ([]plan.DesiredSet, error) {
	fam, held := l.family, map[plan.Entry]string{}
	if snap, ok := current.Snapshot.(*seriesSnapshot); ok {
		fam = snap.family
		for _, ls := range snap.lists {
			for p, set := range ls.owned {
				if set != "" { // unlabelled: held by no set yet
					held[plan.Entry{Prefix: p}] = set
				}
			}
		}
	}
	shaped, dropped := sink.BareCIDRs(desired, fam == "IPv6")
	if dropped > 0 {
		l.log.Info("prefix list holds one address family; other addresses left out", "sink", l.Name(), "family", fam, "left_out", dropped)
	}
	out, conflicts := plan.Claim(shaped, held, plan.KeepLabel)
	if len(conflicts) > 0 {
		return out, &plan.GuardError{Guard: plan.GuardEC2Overlap, Sink: l.Name(), Msg: conflicts[0]}
	}
	return out, nil
}

// Check refuses a plan the lists cannot hold, before anything changes.
func (l *PrefixList) Check(p plan.SinkPlan) error {
	snap, _ := p.Snapshot.(*seriesSnapshot)
	if snap == nil {
		snap = l.empty()
	}
	_, err := l.place(snap, p)
	return err
}

// empty is the series before any list exists.
func (l *PrefixList) empty() *seriesSnapshot {
	snap := &seriesSnapshot{family: cmp.Or(l.family, "IPv4")}
	for i := range l.lists {
		snap.lists = append(snap.lists, &listSnapshot{name: listName(l.ref, i), maxEntries: l.max, family: snap.family,
			owned: map[netip.Prefix]string{}, foreign: map[netip.Prefix]bool{}})
	}
	return snap
}

// listChange is what one list of the series gets.
type listChange struct {
	// maxEntries is the list's new MaxEntries, 0 to keep it.
	maxEntries int
	adds       []types.AddPrefixListEntry
	removes    []types.RemovePrefixListEntry
}

// place decides which list each change goes to: an entry stays in the list
// that holds it, a removal leaves its own list, and a new address goes to
// the first list with room, in series order. A plan the series cannot hold
// is a *plan.GuardError.
func (l *PrefixList) place(snap *seriesSnapshot, p plan.SinkPlan) ([]listChange, error) {
	changes := make([]listChange, len(snap.lists))
	// added holds every prefix the plan wants, present or not: a removal
	// of a wanted prefix (the same CIDR under another label) is dropped.
	added := map[netip.Prefix]bool{}
	var pending []types.AddPrefixListEntry
	for _, e := range p.Add {
		desc := sink.Marker(l.owner, e.Set)
		if err := CheckDescription(desc); err != nil {
			return nil, fmt.Errorf("set %q: %w", e.Set, err)
		}
		if added[e.Prefix] {
			continue
		}
		added[e.Prefix] = true
		if snap.present(e.Prefix) {
			continue
		}
		pending = append(pending, types.AddPrefixListEntry{Cidr: aws.String(e.Prefix.String()), Description: aws.String(desc)})
	}
	for _, e := range p.Remove {
		if added[e.Prefix] {
			continue
		}
		for i, ls := range snap.lists {
			if set, ok := ls.owned[e.Prefix]; ok && (set == e.Set || set == "") {
				changes[i].removes = append(changes[i].removes, types.RemovePrefixListEntry{Cidr: aws.String(e.Prefix.String())})
				break
			}
		}
	}
	// Existing lists first, then growing a list of ours (as far as its
	// referencing groups allow), and only then new lists, which no rule
	// references yet.
	ours, foreign, capacity := len(pending), 0, 0
	fill := func(i, room int) {
		n := min(max(room, 0), len(pending))
		changes[i].adds, pending = append(changes[i].adds, pending[:n]...), pending[n:]
	}
	for i, ls := range snap.lists {
		ours += len(ls.owned) - len(changes[i].removes)
		foreign += len(ls.foreign)
		capacity += ls.maxEntries
		if ls.id != "" {
			fill(i, ls.maxEntries-ls.size()+len(changes[i].removes))
		}
	}
	var limits []string
	for i, ls := range snap.lists {
		if n := min(ls.grow, len(pending)); n > 0 {
			changes[i].maxEntries = ls.maxEntries + n
			fill(i, n)
		}
		if ls.limit != "" {
			limits = append(limits, ls.limit)
		}
	}
	for i, ls := range snap.lists {
		if ls.id == "" {
			fill(i, ls.maxEntries)
		}
	}
	if len(pending) == 0 {
		return changes, nil
	}
	msg := fmt.Sprintf("the list would hold %d entries (%d ours, %d others), more than its MaxEntries %d; raise MaxEntries (a group rule referencing the list counts as MaxEntries rules) or route fewer sets to it",
		ours+foreign, ours, foreign, capacity)
	if len(snap.lists) > 1 {
		msg = fmt.Sprintf("the %d lists %s… would hold %d entries (%d ours, %d others), more than their MaxEntries allow (%d in all); raise max_entries or max_lists (a group rule referencing a list counts as its MaxEntries rules) or route fewer sets to them",
			len(snap.lists), l.ref, ours+foreign, ours, foreign, capacity)
	}
	if len(limits) > 0 {
		msg += "; growing MaxEntries is refused: " + strings.Join(limits, "; ")
	}
	return nil, &plan.GuardError{Guard: plan.GuardEC2MaxEntries, Sink: p.Sink, Msg: msg}
}

// Apply creates the lists it needs, then changes each in calls of at most
// 100 additions and 100 removals, each against the version it read. A
// removal only ever drops an address no set wants, so pairing it with
// additions opens no gap, and each call is atomic. An extra list left
// empty, ours and unreferenced, is deleted.
func (l *PrefixList) Apply(ctx context.Context, p plan.SinkPlan) error {
	if err := sink.CheckPlan(p); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, l.opts.CallTimeout())
	defer cancel()
	snap, _ := p.Snapshot.(*seriesSnapshot)
	if snap != nil {
		// Apply moves versions on; the plan's read stays as it was.
		snap = snap.clone()
	} else {
		var err error
		if snap, _, err = l.read(ctx); err != nil {
			return err
		}
	}
	changes, err := l.place(snap, p)
	if err != nil {
		return err
	}
	if err := l.write(ctx, snap, changes); err != nil {
		return err
	}
	for _, ls := range snap.lists[1:] {
		if ls.id != "" && ls.ours && ls.size() == 0 {
			if err := l.retire(ctx, ls); err != nil {
				return err
			}
		}
	}
	return nil
}

// write makes what place decided: creates, resizes, then modifies each
// list, keeping snap up to date with what it wrote.
func (l *PrefixList) write(ctx context.Context, snap *seriesSnapshot, changes []listChange) error {
	for i, c := range changes {
		ls := snap.lists[i]
		if ls.id == "" && len(c.adds) == 0 {
			continue
		}
		if c.maxEntries > 0 {
			if err := l.resize(ctx, ls, c.maxEntries); err != nil {
				return err
			}
		}
		if err := l.modify(ctx, ls, c.adds, c.removes); err != nil {
			return err
		}
	}
	return nil
}

// modify applies one list's changes, creating the list when missing, and
// keeps ls up to date with what it wrote.
func (l *PrefixList) modify(ctx context.Context, ls *listSnapshot, adds []types.AddPrefixListEntry, removes []types.RemovePrefixListEntry) error {
	if ls.id == "" {
		var err error
		if adds, err = l.create(ctx, ls, adds); err != nil {
			return err
		}
	}
	for conflicts := 0; len(adds)+len(removes) > 0; {
		a, r := adds[:min(MaxEntriesPerCall, len(adds))], removes[:min(MaxEntriesPerCall, len(removes))]
		in := &ec2.ModifyManagedPrefixListInput{PrefixListId: aws.String(ls.id), CurrentVersion: aws.Int64(ls.version)}
		if ls.name != "" {
			// Restating the name is a no-op for EC2, but moto clears a
			// name that a modification leaves out.
			in.PrefixListName = aws.String(ls.name)
		}
		if len(a) > 0 {
			in.AddEntries = a
		}
		if len(r) > 0 {
			in.RemoveEntries = r
		}
		_, err := l.api.ModifyManagedPrefixList(ctx, in)
		if err != nil {
			c := code(err)
			if c != "PrefixListVersionMismatch" && c != "IncorrectState" && c != "ConcurrentMutationLimitExceeded" || conflicts == maxConflicts {
				return wrap("ModifyManagedPrefixList", err)
			}
			conflicts++
			// Someone else changed the list: wait, re-read, and redo only
			// what is still needed.
			l.log.Info("prefix list changed under us; re-reading", "sink", l.Name(), "list", ls.id, "err", wrap("ModifyManagedPrefixList", err).Error())
			if err := l.sleep(ctx, l.firstPoll); err != nil {
				return err
			}
			if err := l.reread(ctx, ls); err != nil {
				return err
			}
			adds = slices.DeleteFunc(adds, func(e types.AddPrefixListEntry) bool {
				p := netip.MustParsePrefix(*e.Cidr)
				_, ours := ls.owned[p]
				return ours || ls.foreign[p]
			})
			removes = slices.DeleteFunc(removes, func(e types.RemovePrefixListEntry) bool {
				_, ours := ls.owned[netip.MustParsePrefix(*e.Cidr)]
				return !ours
			})
			continue
		}
		for _, e := range a {
			ls.owned[netip.MustParsePrefix(*e.Cidr)] = ""
		}
		for _, e := range r {
			delete(ls.owned, netip.MustParsePrefix(*e.Cidr))
		}
		adds, removes = adds[len(a):], removes[len(r):]
		info, err := l.wait(ctx, ls.id, "modify-in-progress")
		if err != nil {
			return err
		}
		ls.version = aws.ToInt64(info.Version)
	}
	return nil
}

// resize raises a list's MaxEntries, alone in its call as EC2 requires,
// before entries are added to use the room.
func (l *PrefixList) resize(ctx context.Context, ls *listSnapshot, maxEntries int) error {
	in := &ec2.ModifyManagedPrefixListInput{PrefixListId: aws.String(ls.id), MaxEntries: aws.Int32(int32(maxEntries))}
	if ls.name != "" {
		in.PrefixListName = aws.String(ls.name)
	}
	if _, err := l.api.ModifyManagedPrefixList(ctx, in); err != nil {
		return wrap("ModifyManagedPrefixList", err)
	}
	l.log.Info("prefix list MaxEntries raised", "sink", l.Name(), "list", ls.id, "from", ls.maxEntries, "to", maxEntries)
	info, err := l.wait(ctx, ls.id, "modify-in-progress")
	if err != nil {
		return err
	}
	ls.maxEntries, ls.version = maxEntries, aws.ToInt64(info.Version)
	return nil
}

// reread reads one list again after a conflicting change.
func (l *PrefixList) reread(ctx context.Context, ls *listSnapshot) error {
	out, err := l.api.DescribeManagedPrefixLists(ctx, &ec2.DescribeManagedPrefixListsInput{PrefixListIds: []string{ls.id}})
	if err != nil {
		return wrap("DescribeManagedPrefixLists", err)
	}
	if len(out.PrefixLists) != 1 {
		return fmt.Errorf("prefix list %s vanished", ls.id)
	}
	fresh := &listSnapshot{owned: map[netip.Prefix]string{}, foreign: map[netip.Prefix]bool{}}
	if err := l.readList(ctx, fresh, &out.PrefixLists[0], &plan.State{}); err != nil {
		return err
	}
	*ls = *fresh
	return nil
}

// referencing returns the security groups whose rules reference the list.
// Groups are scanned whole: EC2 filters ingress references only, and moto
// neither direction reliably.
func (l *PrefixList) referencing(ctx context.Context, id string) ([]types.SecurityGroup, error) {
	var groups []types.SecurityGroup
	pages := ec2.NewDescribeSecurityGroupsPaginator(l.api, &ec2.DescribeSecurityGroupsInput{MaxResults: aws.Int32(1000)})
	for pages.HasMorePages() {
		out, err := pages.NextPage(ctx)
		if err != nil {
			return nil, wrap("DescribeSecurityGroups", err)
		}
		for _, g := range out.SecurityGroups {
			if references(g.IpPermissions, id) || references(g.IpPermissionsEgress, id) {
				groups = append(groups, g)
			}
		}
	}
	return groups, nil
}

func references(perms []types.IpPermission, id string) bool {
	for _, perm := range perms {
		if slices.ContainsFunc(perm.PrefixListIds, func(r types.PrefixListId) bool { return aws.ToString(r.PrefixListId) == id }) {
			return true
		}
	}
	return false
}

// headroom sets how far ls may grow: up to max_entries, as far as each
// group that references it keeps its rules, in the list's family and the
// direction of the reference, within rule_limit. A reference to a prefix
// list counts as that list's MaxEntries rules, as EC2 counts it.
func (l *PrefixList) headroom(ctx context.Context, ls *listSnapshot) error {
	ls.grow, ls.limit = l.max-ls.maxEntries, ""
	groups, err := l.referencing(ctx, ls.id)
	if err != nil || len(groups) == 0 {
		return err
	}
	sizes := map[string]int{ls.id: ls.maxEntries}
	var ids []string
	for _, g := range groups {
		for _, perm := range slices.Concat(g.IpPermissions, g.IpPermissionsEgress) {
			for _, r := range perm.PrefixListIds {
				if id := aws.ToString(r.PrefixListId); !slices.Contains(ids, id) && id != ls.id {
					ids = append(ids, id)
				}
			}
		}
	}
	families := map[string]string{ls.id: ls.family}
	if len(ids) > 0 {
		out, err := l.api.DescribeManagedPrefixLists(ctx, &ec2.DescribeManagedPrefixListsInput{PrefixListIds: ids})
		if err != nil {
			return wrap("DescribeManagedPrefixLists", err)
		}
		for _, pl := range out.PrefixLists {
			sizes[aws.ToString(pl.PrefixListId)] = int(aws.ToInt32(pl.MaxEntries))
			families[aws.ToString(pl.PrefixListId)] = aws.ToString(pl.AddressFamily)
		}
	}
	for _, g := range groups {
		for _, dir := range []struct {
			name  string
			perms []types.IpPermission
		}{{"inbound", g.IpPermissions}, {"outbound", g.IpPermissionsEgress}} {
			if !references(dir.perms, ls.id) {
				continue
			}
			used, refs := 0, 0
			for _, perm := range dir.perms {
				if ls.family == "IPv6" {
					used += len(perm.Ipv6Ranges)
				} else {
					used += len(perm.IpRanges)
				}
				used += len(perm.UserIdGroupPairs)
				for _, r := range perm.PrefixListIds {
					if id := aws.ToString(r.PrefixListId); families[id] == ls.family {
						used += sizes[id]
					}
					if aws.ToString(r.PrefixListId) == ls.id {
						refs++
					}
				}
			}
			// Each reference to the list (one per port) grows with it.
			if room := max(l.quota-used, 0) / refs; room < ls.grow {
				ls.grow = room
				ls.limit = fmt.Sprintf("security group %s has %d %s %s rules of rule_limit %d (a reference to %s counts as its MaxEntries %d)",
					aws.ToString(g.GroupId), used, dir.name, ls.family, l.quota, ls.id, ls.maxEntries)
				if refs > 1 {
					ls.limit = fmt.Sprintf("security group %s has %d %s %s rules of rule_limit %d (%d references to %s, each counting as its MaxEntries %d)",
						aws.ToString(g.GroupId), used, dir.name, ls.family, l.quota, refs, ls.id, ls.maxEntries)
				}
			}
		}
	}
	return nil
}

// retire deletes an extra list that holds nothing, unless a group still
// references it: deleting would fail, and a rule would lose its target.
func (l *PrefixList) retire(ctx context.Context, ls *listSnapshot) error {
	groups, err := l.referencing(ctx, ls.id)
	if err != nil {
		return err
	}
	if len(groups) > 0 {
		l.log.Info("empty prefix list kept: a security group references it", "sink", l.Name(), "list", ls.id, "group", aws.ToString(groups[0].GroupId))
		return nil
	}
	if _, err := l.api.DeleteManagedPrefixList(ctx, &ec2.DeleteManagedPrefixListInput{PrefixListId: aws.String(ls.id)}); err != nil {
		return wrap("DeleteManagedPrefixList", err)
	}
	l.log.Info("deleted empty prefix list", "sink", l.Name(), "list", ls.id, "name", ls.name)
	ls.id = ""
	return nil
}

// create makes the list ls names with up to 100 of the additions and
// returns the rest.
func (l *PrefixList) create(ctx context.Context, ls *listSnapshot, adds []types.AddPrefixListEntry) ([]types.AddPrefixListEntry, error) {
	first := adds[:min(MaxEntriesPerCall, len(adds))]
	var entries []types.AddPrefixListEntry
	if len(first) > 0 {
		entries = first
	}
	out, err := l.api.CreateManagedPrefixList(ctx, &ec2.CreateManagedPrefixListInput{
		PrefixListName: aws.String(ls.name), AddressFamily: aws.String(ls.family), MaxEntries: aws.Int32(int32(ls.maxEntries)),
		Entries:           entries,
		TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypePrefixList, Tags: tagList(tags(l.owner, l.opts.Tags))}},
	})
	if err != nil {
		return nil, wrap("CreateManagedPrefixList", err)
	}
	if out.PrefixList == nil || out.PrefixList.PrefixListId == nil {
		return nil, errors.New("CreateManagedPrefixList: no list in the response")
	}
	ls.id, ls.ours = *out.PrefixList.PrefixListId, true
	for _, e := range first {
		ls.owned[netip.MustParsePrefix(*e.Cidr)] = ""
	}
	info, err := l.wait(ctx, ls.id, "create-in-progress")
	if err != nil {
		return nil, err
	}
	ls.version = aws.ToInt64(info.Version)
	return adds[len(first):], nil
}
