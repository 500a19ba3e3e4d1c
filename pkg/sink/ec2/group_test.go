package ec2

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/sink/sinktest"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/ec2fake"
)

var ignoreTags = cmpopts.IgnoreFields(ec2fake.Rule{}, "Tags")

// rule is a rule as the sink writes it.
func rule(group string, egress bool, cidr string, port int32, desc string) ec2fake.Rule {
	return ec2fake.Rule{GroupID: group, Egress: egress, Protocol: "tcp", FromPort: port, ToPort: port, CIDR: cidr, Description: desc}
}

func TestGroupSyncKeepsUnrelatedAndSecondRunIsQuiet(t *testing.T) {
	f := ec2fake.New()
	defer f.Close()
	sg := f.AddGroup()
	unrelated := ec2fake.Rule{GroupID: sg, Egress: true, Protocol: "-1", FromPort: -1, ToPort: -1, CIDR: "0.0.0.0/0"}
	f.AddRule(unrelated)
	// Someone already allows one of the addresses; we must not duplicate
	// or ever touch it.
	covering := rule(sg, false, "193.0.2.10/32", 443, "ops team")
	f.AddRule(covering)
	api, _ := testClient(f.URL)
	g := newGroup(t, api, sg, func(o *GroupOptions) { o.Tags = map[string]string{"team": "sre"} })
	desired := []plan.DesiredSet{
		set("events", plan.Egress, p443, "198.52.100.1/32", "2001:db9::1/128"),
		set("webhooks", plan.Ingress, p443, "193.0.2.10/32", "193.0.2.11/32"),
	}
	p := mustCycle(t, g, desired)
	if len(p.Add) != 3 || len(p.Covered) != 1 {
		t.Fatalf("plan: add %v covered %v", p.Add, p.Covered)
	}
	want := []ec2fake.Rule{
		covering,
		rule(sg, false, "193.0.2.11/32", 443, "pdsafelist:webhooks"),
		unrelated,
		rule(sg, true, "198.52.100.1/32", 443, "pdsafelist:events"),
		rule(sg, true, "2001:db9::1/128", 443, "pdsafelist:events"),
	}
	if diff := cmp.Diff(want, f.Rules(sg), ignoreTags); diff != "" {
		t.Errorf("rules (-want +got):\n%s", diff)
	}
	wantTags := map[string]string{"pdsafelist": "managed", "team": "sre"}
	if diff := cmp.Diff(wantTags, f.Rules(sg)[1].Tags); diff != "" {
		t.Errorf("tags (-want +got):\n%s", diff)
	}
	wantCalls := map[string]int{"DescribeSecurityGroupRules": 1, "AuthorizeSecurityGroupIngress": 1, "AuthorizeSecurityGroupEgress": 1}
	if diff := cmp.Diff(wantCalls, f.Calls()); diff != "" {
		t.Errorf("first sync calls (-want +got):\n%s", diff)
	}
	f.ResetCalls()
	p = mustCycle(t, g, desired)
	if p.HasChanges() || len(p.Keep) != 3 {
		t.Errorf("second plan: %+v", p)
	}
	if diff := cmp.Diff(map[string]int{"DescribeSecurityGroupRules": 1}, f.Calls()); diff != "" {
		t.Errorf("second sync calls (-want +got):\n%s", diff)
	}
}

func TestGroupShrinkRevokesOnlyTheRetiredRule(t *testing.T) {
	f := ec2fake.New()
	defer f.Close()
	sg := f.AddGroup()
	other := rule(sg, true, "203.1.113.9/32", 443, "pdsafelist:teamb:events") // another owner's
	f.AddRule(other)
	api, _ := testClient(f.URL)
	g := newGroup(t, api, sg, nil)
	mustCycle(t, g, []plan.DesiredSet{set("events", plan.Egress, p443, "198.52.100.1/32", "198.52.100.3/32", "198.52.100.5/32")})
	f.ResetCalls()
	p := mustCycle(t, g, []plan.DesiredSet{set("events", plan.Egress, p443, "198.52.100.1/32", "198.52.100.5/32")})
	if diff := cmp.Diff([]plan.Entry{{Set: "events", Prefix: prefixes("198.52.100.3/32")[0], Direction: plan.Egress, Protocol: plan.TCP, Port: 443}}, p.Remove, cmpPrefix); diff != "" {
		t.Errorf("remove (-want +got):\n%s", diff)
	}
	want := []ec2fake.Rule{
		rule(sg, true, "198.52.100.1/32", 443, "pdsafelist:events"),
		rule(sg, true, "198.52.100.5/32", 443, "pdsafelist:events"),
		other,
	}
	if diff := cmp.Diff(want, f.Rules(sg), ignoreTags); diff != "" {
		t.Errorf("rules (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int{"RevokeSecurityGroupEgress": 1}, mutating(f.Calls())); diff != "" {
		t.Errorf("mutating calls (-want +got):\n%s", diff)
	}
}

// The catalog's events, api and app sets are all egress tcp/443; a group
// holds one rule per address, so each shared address goes to one set.
func TestGroupSharedAddressClaimedOnce(t *testing.T) {
	f := ec2fake.New()
	defer f.Close()
	sg := f.AddGroup()
	api, _ := testClient(f.URL)
	g := newGroup(t, api, sg, nil)
	shared := "198.52.100.7/32"
	desired := []plan.DesiredSet{
		set("events", plan.Egress, p443, shared, "198.52.100.1/32"),
		set("api", plan.Egress, p443, shared),
		set("app", plan.Egress, p443, shared),
	}
	mustCycle(t, g, desired)
	want := []ec2fake.Rule{
		rule(sg, true, "198.52.100.1/32", 443, "pdsafelist:events"),
		rule(sg, true, shared, 443, "pdsafelist:api"), // first by name
	}
	if diff := cmp.Diff(want, f.Rules(sg), ignoreTags); diff != "" {
		t.Errorf("rules (-want +got):\n%s", diff)
	}
	if p := mustCycle(t, g, desired); p.HasChanges() {
		t.Errorf("second run changes: %+v", p)
	}
	// api stops wanting it: the rule stays (app and events still need it)
	// and is handed to app, first by name, in place: never revoked.
	f.ResetCalls()
	desired[1] = set("api", plan.Egress, p443, "198.52.100.9/32")
	mustCycle(t, g, desired)
	if p := mustCycle(t, g, desired); p.HasChanges() {
		t.Errorf("run after api moved: changes %+v", p)
	}
	wantCalls := map[string]int{"AuthorizeSecurityGroupEgress": 1, "ModifySecurityGroupRules": 1}
	if diff := cmp.Diff(wantCalls, mutating(f.Calls())); diff != "" {
		t.Errorf("mutating calls after api moved (-want +got):\n%s", diff)
	}
	want = []ec2fake.Rule{
		rule(sg, true, "198.52.100.1/32", 443, "pdsafelist:events"),
		rule(sg, true, shared, 443, "pdsafelist:app"),
		rule(sg, true, "198.52.100.9/32", 443, "pdsafelist:api"),
	}
	if diff := cmp.Diff(want, f.Rules(sg), ignoreTags); diff != "" {
		t.Errorf("rules after api moved (-want +got):\n%s", diff)
	}
}

// A multi-port holder that drops an address hands its rules to the next
// set by rewriting descriptions, never by revoke and re-add.
func TestGroupHandoverRelabels(t *testing.T) {
	f := ec2fake.New()
	defer f.Close()
	sg := f.AddGroup()
	api, _ := testClient(f.URL)
	g := newGroup(t, api, sg, nil)
	two := []uint16{443, 8443}
	mustCycle(t, g, []plan.DesiredSet{
		set("alpha", plan.Ingress, two, "193.0.2.1/32"),
		set("beta", plan.Ingress, two, "193.0.2.1/32"),
	})
	f.ResetCalls()
	desired := []plan.DesiredSet{
		set("alpha", plan.Ingress, two, "193.0.2.2/32"),
		set("beta", plan.Ingress, two, "193.0.2.1/32"),
	}
	mustCycle(t, g, desired)
	want := []ec2fake.Rule{
		rule(sg, false, "193.0.2.1/32", 443, "pdsafelist:beta"),
		rule(sg, false, "193.0.2.1/32", 8443, "pdsafelist:beta"),
		rule(sg, false, "193.0.2.2/32", 443, "pdsafelist:alpha"),
		rule(sg, false, "193.0.2.2/32", 8443, "pdsafelist:alpha"),
	}
	if diff := cmp.Diff(want, f.Rules(sg), ignoreTags); diff != "" {
		t.Errorf("rules (-want +got):\n%s", diff)
	}
	wantCalls := map[string]int{"AuthorizeSecurityGroupIngress": 1, "ModifySecurityGroupRules": 1}
	if diff := cmp.Diff(wantCalls, mutating(f.Calls())); diff != "" {
		t.Errorf("mutating calls (-want +got):\n%s", diff)
	}
	if p := mustCycle(t, g, desired); p.HasChanges() {
		t.Errorf("not stable: %+v", p)
	}
}

func TestGroupPartialPortOverlapRefused(t *testing.T) {
	f := ec2fake.New()
	defer f.Close()
	sg := f.AddGroup()
	api, _ := testClient(f.URL)
	g := newGroup(t, api, sg, nil)
	_, err := cycle(t, g, []plan.DesiredSet{
		set("alpha", plan.Ingress, p443, "193.0.2.1/32"),
		set("beta", plan.Ingress, []uint16{443, 8443}, "193.0.2.1/32"),
	})
	var ge *plan.GuardError
	if !errors.As(err, &ge) || ge.Guard != plan.GuardEC2Overlap || !strings.Contains(err.Error(), "alpha") {
		t.Fatalf("err = %v", err)
	}
	if n := len(mutating(f.Calls())); n != 0 {
		t.Errorf("refused plan made %d kinds of mutating call", n)
	}
}

func addrs(n int, format string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf(format, i+1)
	}
	return out
}

func TestGroupRuleLimit(t *testing.T) {
	f := ec2fake.New()
	defer f.Close()
	sg := f.AddGroup()
	f.AddRule(ec2fake.Rule{GroupID: sg, Egress: true, Protocol: "-1", FromPort: -1, ToPort: -1, CIDR: "0.0.0.0/0"})
	api, _ := testClient(f.URL)
	g := newGroup(t, api, sg, nil)
	// 60 IPv6 plus 59 IPv4 (and the unrelated IPv4 rule) fit: the quota
	// counts each family separately.
	fits := []plan.DesiredSet{set("events", plan.Egress, p443, append(addrs(59, "198.52.100.%d/32"), addrs(60, "2001:db9::%x/128")...)...)}
	mustCycle(t, g, fits)
	if got := len(f.Rules(sg)); got != 120 {
		t.Fatalf("%d rules, want 120", got)
	}
	f.ResetCalls()
	over := []plan.DesiredSet{set("events", plan.Egress, p443, append(addrs(60, "198.52.100.%d/32"), addrs(60, "2001:db9::%x/128")...)...)}
	_, err := cycle(t, g, over)
	var ge *plan.GuardError
	if !errors.As(err, &ge) || ge.Guard != plan.GuardEC2RuleLimit {
		t.Fatalf("err = %v", err)
	}
	for _, s := range []string{"61 egress IPv4 rules", "60 ours, 1 others", "rule_limit 60", "prefix list"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q lacks %q", err, s)
		}
	}
	if n := len(mutating(f.Calls())); n != 0 {
		t.Errorf("refused plan made mutating calls: %v", f.Calls())
	}
	// A raised limit lets it through; the fake keeps EC2's real 60.
	g2 := newGroup(t, api, sg, func(o *GroupOptions) { o.RuleLimit = 100 })
	_, err = cycle(t, g2, over)
	if code(err) != "RulesPerSecurityGroupLimitExceeded" || !strings.Contains(err.Error(), "AuthorizeSecurityGroupEgress: RulesPerSecurityGroupLimitExceeded") {
		t.Errorf("over the real quota: %v", err)
	}
}

func TestGroupThrottlingRetried(t *testing.T) {
	f := ec2fake.New()
	defer f.Close()
	sg := f.AddGroup()
	f.Inject(ec2fake.Fault{Action: "DescribeSecurityGroupRules", Code: "RequestLimitExceeded", Times: 2})
	f.Inject(ec2fake.Fault{Action: "AuthorizeSecurityGroupEgress", Code: "RequestLimitExceeded", Times: 2})
	api, _ := testClient(f.URL)
	g := newGroup(t, api, sg, nil)
	mustCycle(t, g, []plan.DesiredSet{set("events", plan.Egress, p443, "198.52.100.1/32")})
	// The group is empty, so the read also checks that it exists.
	want := map[string]int{"DescribeSecurityGroupRules": 3, "DescribeSecurityGroups": 1, "AuthorizeSecurityGroupEgress": 3}
	if diff := cmp.Diff(want, f.Calls()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	if len(f.Rules(sg)) != 1 {
		t.Errorf("rules: %v", f.Rules(sg))
	}
}

func TestGroupThrottlingExhaustedIsOneLine(t *testing.T) {
	f := ec2fake.New()
	defer f.Close()
	sg := f.AddGroup()
	f.Inject(ec2fake.Fault{Action: "DescribeSecurityGroupRules", Code: "RequestLimitExceeded", Times: 3})
	api, _ := testClient(f.URL)
	g := newGroup(t, api, sg, nil)
	_, err := g.Current(context.Background())
	if err == nil || strings.Contains(err.Error(), "\n") || !strings.HasPrefix(err.Error(), "DescribeSecurityGroupRules: RequestLimitExceeded: ") {
		t.Errorf("err = %q", err)
	}
}

// An apply that fails part way (adds done, revoke refused) converges on the
// next run, which only does what is left.
func TestGroupFailurePartWayConverges(t *testing.T) {
	f := ec2fake.New()
	defer f.Close()
	sg := f.AddGroup()
	api, _ := testClient(f.URL)
	g := newGroup(t, api, sg, nil)
	mustCycle(t, g, []plan.DesiredSet{
		set("events", plan.Egress, p443, "198.52.100.1/32"),
		set("webhooks", plan.Ingress, p443, "193.0.2.1/32"),
	})
	next := []plan.DesiredSet{
		set("events", plan.Egress, p443, "198.52.100.2/32"),
		set("webhooks", plan.Ingress, p443, "193.0.2.2/32"),
	}
	// Mutations: authorize ingress, authorize egress, revoke ingress (fails).
	f.Inject(ec2fake.Fault{Mutating: true, Skip: 2, Code: "UnauthorizedOperation", Message: "You are not authorized to perform this operation."})
	_, err := cycle(t, g, next)
	if code(err) != "UnauthorizedOperation" || strings.Contains(err.Error(), "\n") {
		t.Fatalf("err = %v", err)
	}
	if got := len(f.Rules(sg)); got != 4 {
		t.Fatalf("after the failure: %d rules, want the 2 old and 2 new", got)
	}
	f.ResetCalls()
	p := mustCycle(t, g, next)
	if len(p.Add) != 0 || len(p.Remove) != 2 {
		t.Errorf("rerun plan: add %v remove %v", p.Add, p.Remove)
	}
	want := []ec2fake.Rule{
		rule(sg, false, "193.0.2.2/32", 443, "pdsafelist:webhooks"),
		rule(sg, true, "198.52.100.2/32", 443, "pdsafelist:events"),
	}
	if diff := cmp.Diff(want, f.Rules(sg), ignoreTags); diff != "" {
		t.Errorf("rules (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int{"RevokeSecurityGroupIngress": 1, "RevokeSecurityGroupEgress": 1}, mutating(f.Calls())); diff != "" {
		t.Errorf("rerun mutating calls (-want +got):\n%s", diff)
	}
}

// A rule that appears between read and apply makes the authorize fail as
// a duplicate: re-read, then add only what is still missing.
func TestGroupDuplicateRereads(t *testing.T) {
	f := ec2fake.New()
	defer f.Close()
	sg := f.AddGroup()
	api, _ := testClient(f.URL)
	g := newGroup(t, api, sg, nil)
	f.Inject(ec2fake.Fault{Action: "AuthorizeSecurityGroupEgress", Before: func(f *ec2fake.Fake) {
		f.AddRule(rule(sg, true, "198.52.100.1/32", 443, "pdsafelist:events")) // a concurrent run
	}})
	mustCycle(t, g, []plan.DesiredSet{set("events", plan.Egress, p443, "198.52.100.1/32", "198.52.100.3/32")})
	if got := len(f.Rules(sg)); got != 2 {
		t.Errorf("%d rules: %v", got, f.Rules(sg))
	}
	want := map[string]int{"DescribeSecurityGroupRules": 2, "DescribeSecurityGroups": 1, "AuthorizeSecurityGroupEgress": 2}
	if diff := cmp.Diff(want, f.Calls()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
}

func TestGroupRevokeNotFoundIsSuccess(t *testing.T) {
	f := ec2fake.New()
	defer f.Close()
	sg := f.AddGroup()
	api, _ := testClient(f.URL)
	g := newGroup(t, api, sg, nil)
	mustCycle(t, g, []plan.DesiredSet{set("events", plan.Egress, p443, "198.52.100.1/32", "198.52.100.3/32", "198.52.100.5/32")})
	st, err := g.Current(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Someone deletes one of the rules we are about to revoke.
	gone := ""
	for k, r := range st.Snapshot.(*groupSnapshot).owned {
		if k.Prefix.String() == "198.52.100.3/32" {
			gone = r.id
		}
	}
	f.Inject(ec2fake.Fault{Action: "RevokeSecurityGroupEgress", Before: func(f *ec2fake.Fake) {
		f.DeleteRule(sg, gone)
	}})
	p := sinktest.Plan(t, sink.Step{Sink: g}, []plan.DesiredSet{set("events", plan.Egress, p443, "198.52.100.1/32")}, st)
	if err := g.Apply(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]ec2fake.Rule{rule(sg, true, "198.52.100.1/32", 443, "pdsafelist:events")}, f.Rules(sg), ignoreTags); diff != "" {
		t.Errorf("rules (-want +got):\n%s", diff)
	}
	if got := f.Calls()["RevokeSecurityGroupEgress"]; got != 2 {
		t.Errorf("%d revoke calls, want the failed one and a retry", got)
	}
}

func TestGroupMissingGroup(t *testing.T) {
	f := ec2fake.New()
	defer f.Close()
	api, _ := testClient(f.URL)
	g := newGroup(t, api, "sg-0123456789abcdef0", nil)
	_, err := g.Current(context.Background())
	if code(err) != "InvalidGroup.NotFound" || !strings.HasPrefix(err.Error(), "DescribeSecurityGroups: InvalidGroup.NotFound: ") {
		t.Errorf("err = %v", err)
	}
}

func TestGroupPaginates(t *testing.T) {
	f := ec2fake.New()
	defer f.Close()
	f.PageSize = 4
	sg := f.AddGroup()
	api, _ := testClient(f.URL)
	g := newGroup(t, api, sg, nil)
	desired := []plan.DesiredSet{set("events", plan.Egress, p443, addrs(10, "198.52.100.%d/32")...)}
	mustCycle(t, g, desired)
	f.ResetCalls()
	if p := mustCycle(t, g, desired); p.HasChanges() || len(p.Keep) != 10 {
		t.Errorf("plan after paged read: %+v", p)
	}
	if got := f.Calls()["DescribeSecurityGroupRules"]; got != 3 {
		t.Errorf("%d pages, want 3", got)
	}
}

func TestDescriptionsValidatedAtOpen(t *testing.T) {
	for _, tc := range []struct {
		owner, sets string
		want        string
	}{
		{"prod<1>", "", "EC2 allows only"},
		{"prod-é", "", "EC2 allows only"},
		{strings.Repeat("o", 220), "", "EC2 allows 255"},
		{"prod", "events", ""},
		{"prod-1 eu/(a)", "events,webhooks", ""},
	} {
		var sets []string
		if tc.sets != "" {
			sets = strings.Split(tc.sets, ",")
		}
		_, err := NewGroup(nil, "us-east-1", GroupOptions{GroupID: "sg-0123456789abcdef0", RuleLimit: 60},
			sink.Spec{Origin: "--sink ec2:sg-0123456789abcdef0", Sets: sets}, sink.Env{OwnerID: tc.owner})
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("owner %q: %v", tc.owner, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") ||
			!strings.HasPrefix(err.Error(), "--sink ec2:sg-0123456789abcdef0: ")):
			t.Errorf("owner %q: err = %v, want one line with %q", tc.owner, err, tc.want)
		}
	}
}

func TestOwnerScopesOwnership(t *testing.T) {
	f := ec2fake.New()
	defer f.Close()
	sg := f.AddGroup()
	api, _ := testClient(f.URL)
	mk := func(owner string) *Group {
		g, err := NewGroup(api, "us-east-1", GroupOptions{GroupID: sg, RuleLimit: 60}, spec(sg), sink.Env{OwnerID: owner})
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	a, b := mk("prod"), mk("staging")
	mustCycle(t, a, []plan.DesiredSet{set("events", plan.Egress, p443, "198.52.100.1/32")})
	p := mustCycle(t, b, []plan.DesiredSet{set("events", plan.Egress, p443, "198.52.100.1/32", "198.52.100.3/32")})
	if len(p.Covered) != 1 || len(p.Add) != 1 {
		t.Errorf("staging plan: add %v covered %v", p.Add, p.Covered)
	}
	// staging drops everything: prod's rule stays.
	mustCycle(t, b, []plan.DesiredSet{set("events", plan.Egress, p443, "198.52.100.9/32")})
	want := []ec2fake.Rule{
		rule(sg, true, "198.52.100.1/32", 443, "pdsafelist:prod:events"),
		rule(sg, true, "198.52.100.9/32", 443, "pdsafelist:staging:events"),
	}
	if diff := cmp.Diff(want, f.Rules(sg), ignoreTags); diff != "" {
		t.Errorf("rules (-want +got):\n%s", diff)
	}
}

// Targets are planned and applied concurrently by the sync command; each
// sink keeps its state to itself.
func TestGroupsConcurrently(t *testing.T) {
	f := ec2fake.New()
	defer f.Close()
	api, _ := testClient(f.URL)
	desired := []plan.DesiredSet{set("events", plan.Egress, p443, addrs(5, "198.52.100.%d/32")...)}
	var wg sync.WaitGroup
	groups := make([]string, 8)
	for i := range groups {
		groups[i] = f.AddGroup()
	}
	for _, sg := range groups {
		g := newGroup(t, api, sg, nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			st, err := g.Current(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			step := sink.Step{Sink: g, Force: true}
			p, err := step.Plan(desired, st)
			if err != nil {
				t.Error(err)
				return
			}
			if err := step.Check(p); err != nil {
				t.Error(err)
				return
			}
			if err := g.Apply(ctx, p); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for _, sg := range groups {
		if got := len(f.Rules(sg)); got != 5 {
			t.Errorf("%s: %d rules", sg, got)
		}
	}
}
