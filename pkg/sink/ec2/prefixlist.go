package ec2

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	// MaxEntries sizes a list we create. A group rule referencing the list
	// counts as this many rules against the group's quota.
	MaxEntries int `yaml:"max_entries"`
	AWSOptions `yaml:",inline"`
}

// Limits of ModifyManagedPrefixList.
const (
	MaxEntriesPerCall = 100
	DefaultMaxEntries = 100
	maxConflicts      = 5
)

var (
	listIDRE   = regexp.MustCompile(`^pl-[0-9a-f]{8,17}$`)
	listNameRE = regexp.MustCompile(`^[a-zA-Z0-9 ._\-:/()#,@\[\]+=&;{}!$*]{1,255}$`)
)

func defaultPrefixListOptions() PrefixListOptions {
	return PrefixListOptions{MaxEntries: DefaultMaxEntries}
}

// PrefixListFactory registers the ec2-prefix-list sink type.
var PrefixListFactory = sink.Factory{
	ArgKey:  "prefix_list",
	Help:    "ec2-prefix-list:pl-ID|NAME  EC2 managed prefix list, created by name if missing (options: family=ipv4|ipv6, max_entries, and the ec2 AWS options)",
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

// PrefixList is the managed prefix list sink.
type PrefixList struct {
	api    API
	ref    string
	byID   bool
	family string
	max    int
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
		region: region, owner: owner, opts: o.AWSOptions, log: log,
		sleep: clock.Sleep, firstPoll: 250 * time.Millisecond, maxPoll: 5 * time.Second}, nil
}

// Name identifies the target in plans.
func (l *PrefixList) Name() string { return "ec2-prefix-list:" + l.region + "/" + l.ref }

type listSnapshot struct {
	id         string // empty when the named list does not exist yet
	name       string
	version    int64
	maxEntries int
	family     string
	owned      map[netip.Prefix]string
	foreign    map[netip.Prefix]bool
}

func (s *listSnapshot) present(p netip.Prefix) bool {
	_, ok := s.owned[p]
	return ok || s.foreign[p]
}

// Current reads the list's entries at its current version.
func (l *PrefixList) Current(ctx context.Context) (plan.State, error) {
	ctx, cancel := context.WithTimeout(ctx, l.opts.CallTimeout())
	defer cancel()
	snap, st, err := l.read(ctx)
	if err != nil {
		return plan.State{}, err
	}
	st.Snapshot = snap
	return st, nil
}

func (l *PrefixList) read(ctx context.Context) (*listSnapshot, plan.State, error) {
	var st plan.State
	info, err := l.find(ctx)
	if err != nil {
		return nil, st, err
	}
	fam := l.family
	if fam == "" {
		fam = "IPv4"
	}
	snap := &listSnapshot{owned: map[netip.Prefix]string{}, foreign: map[netip.Prefix]bool{}, maxEntries: l.max, family: fam}
	if info == nil {
		st.Drift = []string{fmt.Sprintf("prefix list %q does not exist; create it (%s, max %d entries)", l.ref, fam, l.max)}
		return snap, st, nil
	}
	snap.id = aws.ToString(info.PrefixListId)
	snap.name = aws.ToString(info.PrefixListName)
	snap.family = aws.ToString(info.AddressFamily)
	snap.maxEntries = int(aws.ToInt32(info.MaxEntries))
	if l.family != "" && l.family != snap.family {
		return nil, st, fmt.Errorf("%s holds %s, the sink is configured for %s", snap.id, snap.family, l.family)
	}
	if strings.HasSuffix(string(info.State), "-in-progress") {
		if info, err = l.wait(ctx, snap.id, string(info.State)); err != nil {
			return nil, st, err
		}
	}
	snap.version = aws.ToInt64(info.Version)
	pages := ec2.NewGetManagedPrefixListEntriesPaginator(l.api, &ec2.GetManagedPrefixListEntriesInput{
		PrefixListId: aws.String(snap.id), MaxResults: aws.Int32(100)})
	for pages.HasMorePages() {
		out, err := pages.NextPage(ctx)
		if err != nil {
			return nil, st, wrap("GetManagedPrefixListEntries", err)
		}
		for _, e := range out.Entries {
			p, err := netip.ParsePrefix(aws.ToString(e.Cidr))
			if err != nil {
				continue
			}
			p = p.Masked()
			desc := aws.ToString(e.Description)
			if set, mine := sink.ParseMarker(l.owner, desc); mine {
				snap.owned[p] = set
				st.Owned = append(st.Owned, plan.Entry{Set: set, Prefix: p})
			} else if sink.UnreadableMarker(l.owner, desc) {
				// Ours with a label edited by hand: set "", for the plan
				// to give to a routed set. It keeps the edited label, as
				// a relabel here would remove the address for a moment.
				snap.owned[p] = ""
				st.Unlabelled = append(st.Unlabelled, plan.Entry{Prefix: p})
			} else if !snap.foreign[p] {
				snap.foreign[p] = true
				st.Foreign = append(st.Foreign, plan.Entry{Prefix: p})
			}
		}
	}
	st.Owned = plan.Sort(st.Owned)
	st.Foreign = plan.Sort(st.Foreign)
	st.Unlabelled = plan.Sort(st.Unlabelled)
	return snap, st, nil
}

// find describes the list by id, or by name among the customer-managed
// lists (EC2 also returns AWS-managed ones). Nil means no such name.
func (l *PrefixList) find(ctx context.Context) (*types.ManagedPrefixList, error) {
	in := &ec2.DescribeManagedPrefixListsInput{}
	if l.byID {
		in.PrefixListIds = []string{l.ref}
	} else {
		in.Filters = []types.Filter{{Name: aws.String("prefix-list-name"), Values: []string{l.ref}}}
	}
	var found []types.ManagedPrefixList
	pages := ec2.NewDescribeManagedPrefixListsPaginator(l.api, in)
	for pages.HasMorePages() {
		out, err := pages.NextPage(ctx)
		if err != nil {
			return nil, wrap("DescribeManagedPrefixLists", err)
		}
		for _, pl := range out.PrefixLists {
			if aws.ToString(pl.OwnerId) != "AWS" && (l.byID || aws.ToString(pl.PrefixListName) == l.ref) {
				found = append(found, pl)
			}
		}
	}
	switch {
	case len(found) == 0 && l.byID:
		return nil, fmt.Errorf("prefix list %s not found", l.ref)
	case len(found) == 0:
		return nil, nil
	case len(found) > 1:
		return nil, fmt.Errorf("%d prefix lists are named %q; configure one by its pl- id", len(found), l.ref)
	}
	return &found[0], nil
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
	if snap, ok := current.Snapshot.(*listSnapshot); ok {
		fam = snap.family
		for p, set := range snap.owned {
			if set != "" { // unlabelled: held by no set yet
				held[plan.Entry{Prefix: p}] = set
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

// Check refuses a plan the list cannot hold, before anything changes.
func (l *PrefixList) Check(p plan.SinkPlan) error {
	snap, _ := p.Snapshot.(*listSnapshot)
	max, foreign := l.max, 0
	if snap != nil {
		max, foreign = snap.maxEntries, len(snap.foreign)
	}
	seen := map[netip.Prefix]bool{}
	for _, e := range p.Result() {
		if snap == nil || !snap.foreign[e.Prefix] {
			seen[e.Prefix] = true
		}
	}
	if n := len(seen) + foreign; n > max {
		return &plan.GuardError{Guard: plan.GuardEC2MaxEntries, Sink: p.Sink, Msg: fmt.Sprintf(
			"the list would hold %d entries (%d ours, %d others), more than its MaxEntries %d; raise MaxEntries (a group rule referencing the list counts as MaxEntries rules) or route fewer sets to it",
			n, len(seen), foreign, max)}
	}
	return nil
}

// Apply creates the list if needed, then changes it in calls of at most
// 100 additions and 100 removals, each against the version it read. A
// removal only ever drops an address no set wants, so pairing it with
// additions opens no gap, and each call is atomic.
func (l *PrefixList) Apply(ctx context.Context, p plan.SinkPlan) error {
	if err := sink.CheckPlan(p); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, l.opts.CallTimeout())
	defer cancel()
	snap, _ := p.Snapshot.(*listSnapshot)
	if snap != nil {
		// Apply moves the version on; the plan's read stays as it was.
		cp := *snap
		snap = &cp
	}
	if snap == nil {
		var err error
		if snap, _, err = l.read(ctx); err != nil {
			return err
		}
	}
	var adds []types.AddPrefixListEntry
	// added holds every prefix the plan wants, present or not: a removal
	// of a wanted prefix (the same CIDR under another label) is dropped.
	added := map[netip.Prefix]bool{}
	for _, e := range p.Add {
		desc := sink.Marker(l.owner, e.Set)
		if err := CheckDescription(desc); err != nil {
			return fmt.Errorf("set %q: %w", e.Set, err)
		}
		if added[e.Prefix] {
			continue
		}
		added[e.Prefix] = true
		if snap.present(e.Prefix) {
			continue
		}
		adds = append(adds, types.AddPrefixListEntry{Cidr: aws.String(e.Prefix.String()), Description: aws.String(desc)})
	}
	var removes []types.RemovePrefixListEntry
	for _, e := range p.Remove {
		if set, ok := snap.owned[e.Prefix]; ok && (set == e.Set || set == "") && !added[e.Prefix] {
			removes = append(removes, types.RemovePrefixListEntry{Cidr: aws.String(e.Prefix.String())})
		}
	}
	if snap.id == "" {
		var err error
		if adds, err = l.create(ctx, snap, adds); err != nil {
			return err
		}
	}
	for conflicts := 0; len(adds)+len(removes) > 0; {
		a, r := adds[:min(MaxEntriesPerCall, len(adds))], removes[:min(MaxEntriesPerCall, len(removes))]
		in := &ec2.ModifyManagedPrefixListInput{PrefixListId: aws.String(snap.id), CurrentVersion: aws.Int64(snap.version)}
		if snap.name != "" {
			// Restating the name is a no-op for EC2, but moto clears a
			// name that a modification leaves out.
			in.PrefixListName = aws.String(snap.name)
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
			l.log.Info("prefix list changed under us; re-reading", "sink", l.Name(), "err", wrap("ModifyManagedPrefixList", err).Error())
			if err := l.sleep(ctx, l.firstPoll); err != nil {
				return err
			}
			if snap, _, err = l.read(ctx); err != nil {
				return err
			}
			if snap.id == "" {
				return fmt.Errorf("prefix list %s vanished", l.ref)
			}
			adds = slices.DeleteFunc(adds, func(e types.AddPrefixListEntry) bool { return snap.present(netip.MustParsePrefix(*e.Cidr)) })
			removes = slices.DeleteFunc(removes, func(e types.RemovePrefixListEntry) bool {
				_, ours := snap.owned[netip.MustParsePrefix(*e.Cidr)]
				return !ours
			})
			continue
		}
		adds, removes = adds[len(a):], removes[len(r):]
		info, err := l.wait(ctx, snap.id, "modify-in-progress")
		if err != nil {
			return err
		}
		snap.version = aws.ToInt64(info.Version)
	}
	return nil
}

// create makes the named list with up to 100 of the additions and returns
// the rest.
func (l *PrefixList) create(ctx context.Context, snap *listSnapshot, adds []types.AddPrefixListEntry) ([]types.AddPrefixListEntry, error) {
	first := adds[:min(MaxEntriesPerCall, len(adds))]
	var entries []types.AddPrefixListEntry
	if len(first) > 0 {
		entries = first
	}
	out, err := l.api.CreateManagedPrefixList(ctx, &ec2.CreateManagedPrefixListInput{
		PrefixListName: aws.String(l.ref), AddressFamily: aws.String(snap.family), MaxEntries: aws.Int32(int32(snap.maxEntries)),
		Entries:           entries,
		TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypePrefixList, Tags: tagList(tags(l.owner, l.opts.Tags))}},
	})
	if err != nil {
		return nil, wrap("CreateManagedPrefixList", err)
	}
	if out.PrefixList == nil || out.PrefixList.PrefixListId == nil {
		return nil, errors.New("CreateManagedPrefixList: no list in the response")
	}
	snap.id, snap.name = *out.PrefixList.PrefixListId, l.ref
	info, err := l.wait(ctx, snap.id, "create-in-progress")
	if err != nil {
		return nil, err
	}
	snap.version = aws.ToInt64(info.Version)
	return adds[len(first):], nil
}
