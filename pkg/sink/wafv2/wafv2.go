// Package wafv2 keeps an AWS WAF IP set in sync with the desired sets.
//
// WAF entries carry no description, so ownership is per IP set: a set we
// created, or one carrying our tag, is wholly ours, and any other is
// refused untouched. Several pdsafelist sets may share one IP set: which
// address belongs to which set is kept in the IP set's Description, as
// the set names and a run-length map over the addresses in sorted order
// ("pdsafelist sets=events,webhooks map=a3b2a1"). The Description is
// written by the same UpdateIPSet as the addresses, so the map can never
// disagree with them after our own writes; when someone edits the list or
// the description by hand and the map no longer parses or fits, every
// address is read back unlabelled (plan.State.Unlabelled): the plan counts
// it as held by every set routed here, so none is dropped, and the next
// apply rewrites an exact map. A map longer than WAF's 256
// characters is refused by Check before any call: route fewer sets to the
// IP set (one set always fits).
package wafv2

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/wafv2"
	"github.com/aws/aws-sdk-go-v2/service/wafv2/types"

	"github.com/pdsafelist/pdsafelist/pkg/clock"
	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/sink/ec2"
)

// Options configure one IP set (config, or --sink aws-wafv2-ipset:NAME).
type Options struct {
	// IPSet is the set's name, created when missing, or its id.
	IPSet string `yaml:"ipset"`
	// Scope is REGIONAL (ALB, API Gateway, AppSync...) or CLOUDFRONT,
	// which AWS only serves in us-east-1.
	Scope string `yaml:"scope"`
	// Family is ipv4 or ipv6; an IP set holds one, the other is left out.
	Family         string `yaml:"family"`
	ec2.AWSOptions `yaml:",inline"`
}

// Limits of WAF IP sets.
const (
	MaxAddresses   = 10000
	MaxDescription = 256
	// maxConflicts bounds the re-reads after WAFOptimisticLockException.
	maxConflicts = 5
	// maxSets is how many sets the map can name (one letter each).
	maxSets = 26
)

var (
	idRE   = regexp.MustCompile(`^[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$`)
	nameRE = regexp.MustCompile(`^[\w\-]{1,128}$`)
	descRE = regexp.MustCompile(`^[\w+=:#@/\-,.][\w+=:#@/\-,.\s]+[\w+=:#@/\-,.]$`)
)

// Factory registers the aws-wafv2-ipset sink type.
var Factory = sink.Factory{
	ArgKey:  "ipset",
	Help:    "aws-wafv2-ipset:NAME|ID  AWS WAF IP set, created by name if missing; only sets tagged as ours are changed (options: scope=REGIONAL|CLOUDFRONT, family=ipv4|ipv6, and the ec2 AWS options)",
	Options: func() any { return Options{} },
	Open: func(spec sink.Spec, env sink.Env) (sink.Sink, error) {
		o := Options{}
		if err := spec.Decode(&o); err != nil {
			return nil, err
		}
		if _, err := o.check(spec, env); err != nil {
			return nil, err
		}
		if strings.EqualFold(o.Scope, "CLOUDFRONT") && o.Region == "" {
			// CloudFront's WAF lives in us-east-1 whatever AWS_REGION says.
			o.Region = "us-east-1"
		}
		cfg, err := ec2.Config(env, o.AWSOptions)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", spec.Origin, err)
		}
		return New(NewClient(cfg, o.Endpoint), cfg.Region, o, spec, env)
	},
}

func (o Options) check(spec sink.Spec, env sink.Env) (owner string, err error) {
	if err := sink.CheckOptions(spec.Origin, o); err != nil {
		return "", err
	}
	if !idRE.MatchString(o.IPSet) && !nameRE.MatchString(o.IPSet) {
		return "", fmt.Errorf("%s: ipset %q: want an IP set id or a name of 1-128 letters, digits, _ and -", spec.Origin, o.IPSet)
	}
	if _, err := scope(o.Scope); err != nil {
		return "", fmt.Errorf("%s: %w", spec.Origin, err)
	}
	if _, err := family(o.Family); err != nil {
		return "", fmt.Errorf("%s: %w", spec.Origin, err)
	}
	if s, _ := scope(o.Scope); s == types.ScopeCloudfront && o.Region != "" && o.Region != "us-east-1" {
		return "", fmt.Errorf("%s: scope CLOUDFRONT lives in us-east-1, not %s", spec.Origin, o.Region)
	}
	if len(spec.Sets) > maxSets {
		return "", fmt.Errorf("%s: %d sets routed; one IP set holds at most %d", spec.Origin, len(spec.Sets), maxSets)
	}
	if owner, err = validate(o.AWSOptions, env); err != nil {
		return "", fmt.Errorf("%s: %w", spec.Origin, err)
	}
	return owner, nil
}

// validate checks the AWS options as the EC2 sinks do, and that the
// owner id fits a tag value.
func validate(o ec2.AWSOptions, env sink.Env) (string, error) {
	owner, err := o.Owner(env)
	if err != nil {
		return "", err
	}
	if len(owner) > 256 {
		return "", fmt.Errorf("owner id %q: longer than a tag value's 256 characters", owner)
	}
	return owner, nil
}

func scope(s string) (types.Scope, error) {
	switch strings.ToUpper(s) {
	case "", "REGIONAL":
		return types.ScopeRegional, nil
	case "CLOUDFRONT":
		return types.ScopeCloudfront, nil
	}
	return "", fmt.Errorf("scope %q: want REGIONAL or CLOUDFRONT", s)
}

func family(s string) (types.IPAddressVersion, error) {
	switch strings.ToLower(s) {
	case "", "ipv4":
		return types.IPAddressVersionIpv4, nil
	case "ipv6":
		return types.IPAddressVersionIpv6, nil
	}
	return "", fmt.Errorf("family %q: want ipv4 or ipv6", s)
}

// IPSet is the WAF IP set sink.
type IPSet struct {
	api    API
	ref    string
	byID   bool
	scope  types.Scope
	family types.IPAddressVersion
	region string
	owner  string
	opts   ec2.AWSOptions
	log    *slog.Logger
	// sleep waits between lock conflicts; tests replace it.
	sleep func(context.Context, time.Duration) error
}

// New returns the sink for a client; tests pass a fake's.
func New(api API, region string, o Options, spec sink.Spec, env sink.Env) (*IPSet, error) {
	owner, err := o.check(spec, env)
	if err != nil {
		return nil, err
	}
	sc, _ := scope(o.Scope)
	fam, _ := family(o.Family)
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &IPSet{api: api, ref: o.IPSet, byID: idRE.MatchString(o.IPSet), scope: sc, family: fam,
		region: region, owner: owner, opts: o.AWSOptions, log: log, sleep: clock.Sleep}, nil
}

// Name identifies the target in plans.
func (s *IPSet) Name() string {
	return "aws-wafv2-ipset:" + s.region + "/" + strings.ToLower(string(s.scope)) + "/" + s.ref
}

// Current reads the IP set: ListIPSets to find it, its tags, GetIPSet.
func (s *IPSet) Current(ctx context.Context) (plan.State, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.CallTimeout())
	defer cancel()
	snap, st, err := s.read(ctx)
	if err != nil {
		return plan.State{}, err
	}
	// What was read travels with the plan (lock token, ids, the map), not
	// in the sink: Check and Apply take it from p.Snapshot.
	st.Snapshot = snap
	return st, nil
}

func (s *IPSet) read(ctx context.Context) (*snapshot, plan.State, error) {
	var st plan.State
	sum, err := s.find(ctx)
	if err != nil {
		return nil, st, err
	}
	if sum == nil {
		st.Drift = []string{fmt.Sprintf("IP set %q does not exist; create it (%s, %s)", s.ref, s.scope, s.family)}
		return &snapshot{name: s.ref}, st, nil
	}
	snap := &snapshot{name: aws.ToString(sum.Name), id: aws.ToString(sum.Id), arn: aws.ToString(sum.ARN)}
	if err := s.ours(ctx, snap); err != nil {
		return nil, st, err
	}
	out, err := s.api.GetIPSet(ctx, &wafv2.GetIPSetInput{Name: aws.String(snap.name), Id: aws.String(snap.id), Scope: s.scope})
	if err != nil {
		return nil, st, wrap("GetIPSet", err)
	}
	if out.IPSet == nil {
		return nil, st, fmt.Errorf("GetIPSet %s: no IP set in the response", snap.id)
	}
	if v := out.IPSet.IPAddressVersion; v != s.family {
		return nil, st, fmt.Errorf("IP set %s holds %s, the sink is configured for %s", snap.id, v, s.family)
	}
	snap.lock = aws.ToString(out.LockToken)
	snap.desc = aws.ToString(out.IPSet.Description)
	seen := map[netip.Prefix]bool{}
	for _, a := range out.IPSet.Addresses {
		p, err := netip.ParsePrefix(a)
		if err != nil {
			st.Drift = append(st.Drift, fmt.Sprintf("unreadable address %q", a))
			continue
		}
		if p = p.Masked(); !seen[p] {
			seen[p] = true
			snap.addrs = append(snap.addrs, p)
		}
	}
	slices.SortFunc(snap.addrs, netip.Prefix.Compare)
	labels, ok := decodeMap(snap.desc, len(snap.addrs))
	if !ok {
		st.Drift = append(st.Drift, fmt.Sprintf("IP set %s was changed outside pdsafelist: its description no longer maps its %d addresses to sets; every routed set holds them until the map is rewritten", snap.id, len(snap.addrs)))
	}
	for i, p := range snap.addrs {
		if ok {
			st.Owned = append(st.Owned, plan.Entry{Set: labels[i], Prefix: p})
		} else {
			st.Unlabelled = append(st.Unlabelled, plan.Entry{Prefix: p})
		}
	}
	st.Owned, st.Unlabelled = plan.Sort(st.Owned), plan.Sort(st.Unlabelled)
	return snap, st, nil
}

// Shape keeps the configured family and drops ports and direction, which
// an IP set does not hold; each address goes to one set (plan.Claim), as
// the set stores it once.
func (s *IPSet) Shape(desired []plan.DesiredSet, current plan.State) ([]plan.DesiredSet, error) {
	// An unlabelled address is held by none here, so Claim gives it to
	// the first set by name that wants it, as on a first sync, and the
	// next map is the same as if the hand edit had never happened.
	held := map[plan.Entry]string{}
	for _, e := range current.Owned {
		held[plan.Entry{Prefix: e.Prefix}] = e.Set
	}
	shaped, dropped := sink.BareCIDRs(desired, s.family == types.IPAddressVersionIpv6)
	if dropped > 0 {
		s.log.Info("WAF IP set holds one address family; other addresses left out", "sink", s.Name(), "family", s.family, "left_out", dropped)
	}
	out, _ := plan.Claim(shaped, held, plan.KeepLabel)
	return out, nil
}

// Check refuses, before any call, a plan the IP set cannot hold: more than
// 10,000 addresses, or a set-to-address map longer than a description.
func (s *IPSet) Check(p plan.SinkPlan) error {
	addrs, labels := result(p)
	if len(addrs) > MaxAddresses {
		return &plan.GuardError{Guard: plan.GuardWAFv2MaxAddrs, Sink: p.Sink, Msg: fmt.Sprintf(
			"the IP set would hold %d addresses, more than WAF's %d; route fewer sets to it or split them over several IP sets", len(addrs), MaxAddresses)}
	}
	if _, err := encodeMap(addrs, labels); err != nil {
		return &plan.GuardError{Guard: plan.GuardWAFv2SetMap, Sink: p.Sink, Msg: err.Error()}
	}
	return nil
}

// result is what the set holds after p, which is what the plan shows:
// what it keeps plus what it adds, as sorted addresses, each with one
// label.
func result(p plan.SinkPlan) ([]netip.Prefix, []string) {
	label := map[netip.Prefix]string{}
	put := func(set string, pr netip.Prefix) {
		// Adds come last and win; among the rest the first set by name.
		if old, ok := label[pr]; !ok || set < old {
			label[pr] = set
		}
	}
	for _, e := range p.Keep {
		put(e.Set, e.Prefix.Masked())
	}
	for _, e := range p.Add {
		delete(label, e.Prefix)
	}
	for _, e := range p.Add {
		put(e.Set, e.Prefix.Masked())
	}
	addrs := make([]netip.Prefix, 0, len(label))
	for pr := range label {
		addrs = append(addrs, pr)
	}
	slices.SortFunc(addrs, netip.Prefix.Compare)
	labels := make([]string, len(addrs))
	for i, pr := range addrs {
		labels[i] = label[pr]
	}
	return addrs, labels
}

// encodeMap writes the description: the sets in order of first use, and
// runs of letters naming them over the sorted addresses.
func encodeMap(addrs []netip.Prefix, labels []string) (string, error) {
	var sets []string
	var runs strings.Builder
	for i := 0; i < len(labels); {
		j := i
		for j < len(labels) && labels[j] == labels[i] {
			j++
		}
		k := slices.Index(sets, labels[i])
		if k < 0 {
			k, sets = len(sets), append(sets, labels[i])
		}
		if k >= maxSets {
			return "", fmt.Errorf("%d sets in one IP set; its map names at most %d", len(sets), maxSets)
		}
		runs.WriteByte(byte('a' + k))
		runs.WriteString(strconv.Itoa(j - i))
		i = j
	}
	d := "pdsafelist sets=" + strings.Join(sets, ",") + " map=" + runs.String()
	if len(d) > MaxDescription {
		return "", fmt.Errorf("the map of %d addresses to %d sets takes %d characters, more than a WAF description's %d; route fewer sets to this IP set (one set always fits)",
			len(addrs), len(sets), len(d), MaxDescription)
	}
	if !descRE.MatchString(d) {
		return "", fmt.Errorf("set names %q do not fit a WAF description", sets)
	}
	return d, nil
}

var mapRE = regexp.MustCompile(`^pdsafelist sets=([a-z0-9_,]*) map=((?:[a-z][0-9]+)*)$`)
var runRE = regexp.MustCompile(`([a-z])([0-9]+)`)

// decodeMap returns each address's set. A map that does not parse, names
// a set badly or does not cover exactly n addresses cannot be trusted
// (ok false): the caller then reads every address as unlabelled. No map
// at all (a set handed over by tagging it) is the same, unless it is empty.
func decodeMap(desc string, n int) (labels []string, ok bool) {
	labels = make([]string, n)
	m := mapRE.FindStringSubmatch(desc)
	if m == nil {
		return labels, desc == "" && n == 0
	}
	var sets []string
	if m[1] != "" {
		sets = strings.Split(m[1], ",")
	}
	for _, set := range sets {
		if !plan.ValidSetName(set) {
			return labels, false
		}
	}
	i := 0
	for _, r := range runRE.FindAllStringSubmatch(m[2], -1) {
		k := int(r[1][0] - 'a')
		c, err := strconv.Atoi(r[2])
		if k >= len(sets) || err != nil || c <= 0 || i+c > n {
			return labels, false
		}
		for ; c > 0; c-- {
			labels[i] = sets[k]
			i++
		}
	}
	return labels, i == n
}

// Apply writes the whole address list and its map in one call: CreateIPSet
// when the named set is missing, else one UpdateIPSet with the lock token
// read. The list written is the plan's result and nothing else, so the
// plan shown is what was written. On WAFOptimisticLockException it
// re-reads: when the set still holds what the plan was made from (only
// the token moved) it retries, a bounded number of times; when its
// addresses or map changed it writes nothing and fails, and the next run
// plans against what is there. Re-planning here would need the desired
// sets, and writing the old result would undo a change nobody saw.
// Nothing is written when the set already holds the result.
func (s *IPSet) Apply(ctx context.Context, p plan.SinkPlan) error {
	if err := sink.CheckPlan(p); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.CallTimeout())
	defer cancel()
	snap, _ := p.Snapshot.(*snapshot)
	if snap == nil {
		var err error
		if snap, _, err = s.read(ctx); err != nil {
			return err
		}
	}
	addrs, labels := result(p)
	if len(addrs) > MaxAddresses {
		return fmt.Errorf("IP set %s would hold %d addresses, more than WAF's %d", s.ref, len(addrs), MaxAddresses)
	}
	desc, err := encodeMap(addrs, labels)
	if err != nil {
		return fmt.Errorf("IP set %s: %w", s.ref, err)
	}
	list := make([]string, len(addrs))
	for i, a := range addrs {
		list[i] = a.String()
	}
	if snap.id == "" {
		return s.create(ctx, list, desc)
	}
	return s.update(ctx, snap, addrs, list, desc)
}
