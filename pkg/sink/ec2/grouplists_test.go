package ec2

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/google/go-cmp/cmp"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/sink/sinktest"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/ec2fake"
)

func withLists(name string, maxEntries, maxLists, limit int) func(*GroupOptions) {
	return func(o *GroupOptions) {
		o.PrefixLists, o.MaxEntries, o.MaxLists, o.RuleLimit = name, maxEntries, maxLists, limit
	}
}

// refsOf describes a group's reference rules as "PORT NAME", sorted.
func refsOf(t *testing.T, f *ec2fake.Fake, sg string) []string {
	t.Helper()
	var out []string
	for _, r := range f.Rules(sg) {
		if r.PrefixList == "" {
			continue
		}
		l, ok := f.List(r.PrefixList)
		if !ok {
			t.Fatalf("rule references a missing list %s", r.PrefixList)
		}
		dir := "in"
		if r.Egress {
			dir = "out"
		}
		out = append(out, fmt.Sprintf("%s %d %s", dir, r.FromPort, l.Name))
	}
	return sortedStrings(out)
}

func sortedStrings(ss []string) []string { return slices.Sorted(slices.Values(ss)) }

// A set spread over three lists is allowed by one reference per list and
// port; a no-change run only reads; a shrink revokes the references to the
// lists it empties and deletes those lists in the same run, and the run
// after it changes nothing.
func TestGroupPrefixListsSpreadShrinkConverges(t *testing.T) {
	f := ec2fake.New()
	defer f.Close()
	sg := f.AddGroup()
	api, _ := testClient(f.URL)
	g := newGroup(t, api, sg, withLists("pd", 3, 3, 60))
	seven := set("hooks", plan.Ingress, []uint16{443, 8443}, addrs(7, "44.1.1.%d/32")...)
	p := mustCycle(t, g, []plan.DesiredSet{seven})
	if len(p.Add) != 14 {
		t.Errorf("first run adds %d entries, want 7 addresses x 2 ports", len(p.Add))
	}
	if diff := cmp.Diff(map[string]int{"pd": 3, "pd-2": 3, "pd-3": 1}, seriesSizes(t, f, "pd", "pd-2", "pd-3")); diff != "" {
		t.Errorf("sizes (-want +got):\n%s", diff)
	}
	want := []string{"in 443 pd", "in 443 pd-2", "in 443 pd-3", "in 8443 pd", "in 8443 pd-2", "in 8443 pd-3"}
	if diff := cmp.Diff(want, refsOf(t, f, sg)); diff != "" {
		t.Errorf("references (-want +got):\n%s", diff)
	}
	for _, r := range f.Rules(sg) {
		if r.Description != "pdsafelist:prefix_lists" || r.Tags[ManagedTag] != "managed" {
			t.Errorf("reference %+v is not marked as ours", r)
		}
	}
	f.ResetCalls()
	if p := mustCycle(t, g, []plan.DesiredSet{seven}); p.HasChanges() {
		t.Errorf("second run: add %v remove %v drift %v", p.Add, p.Remove, p.Drift)
	}
	if diff := cmp.Diff(map[string]int{"DescribeSecurityGroupRules": 1, "DescribeManagedPrefixLists": 1, "GetManagedPrefixListEntries": 3}, f.Calls()); diff != "" {
		t.Errorf("no-change run calls (-want +got):\n%s", diff)
	}
	three := set("hooks", plan.Ingress, []uint16{443, 8443}, addrs(3, "44.1.1.%d/32")...)
	p = mustCycle(t, g, []plan.DesiredSet{three})
	if len(p.Remove) != 8 {
		t.Errorf("shrink removes %d entries, want 4 addresses x 2 ports", len(p.Remove))
	}
	if diff := cmp.Diff(map[string]int{"pd": 3}, seriesSizes(t, f, "pd", "pd-2", "pd-3")); diff != "" {
		t.Errorf("sizes after the shrink (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"in 443 pd", "in 8443 pd"}, refsOf(t, f, sg)); diff != "" {
		t.Errorf("references after the shrink (-want +got):\n%s", diff)
	}
	if p := mustCycle(t, g, []plan.DesiredSet{three}); p.HasChanges() {
		t.Errorf("run after the shrink: add %v remove %v drift %v", p.Add, p.Remove, p.Drift)
	}
	// A port dropped: its references go, the lists stay.
	p = mustCycle(t, g, []plan.DesiredSet{set("hooks", plan.Ingress, p443, addrs(3, "44.1.1.%d/32")...)})
	if len(p.Remove) != 3 || len(p.Add) != 0 {
		t.Errorf("dropping a port: add %v remove %v", p.Add, p.Remove)
	}
	if diff := cmp.Diff([]string{"in 443 pd"}, refsOf(t, f, sg)); diff != "" {
		t.Errorf("references after dropping 8443 (-want +got):\n%s", diff)
	}
}

// Rules and references that are not ours stay, and count against the
// quota: someone's reference to our list on port 22, a rule of theirs per
// CIDR, and a reference of theirs to a list of theirs.
func TestGroupPrefixListsLeavesOthersAlone(t *testing.T) {
	f := ec2fake.New()
	defer f.Close()
	sg := f.AddGroup()
	api, _ := testClient(f.URL)
	g := newGroup(t, api, sg, withLists("pd", 10, 1, 60))
	d := []plan.DesiredSet{set("hooks", plan.Ingress, p443, addrs(5, "44.1.1.%d/32")...)}
	mustCycle(t, g, d)
	ours, _ := f.ListByName("pd")
	office := f.AddPrefixList("office", "IPv4", 20, ec2fake.Entry{CIDR: "10.0.0.0/8"})
	f.AddRule(ec2fake.Rule{GroupID: sg, Protocol: "tcp", FromPort: 22, ToPort: 22, PrefixList: ours, Description: "ssh from the hooks"})
	f.AddRule(ec2fake.Rule{GroupID: sg, Protocol: "tcp", FromPort: 443, ToPort: 443, PrefixList: office})
	f.AddRule(ec2fake.Rule{GroupID: sg, Protocol: "tcp", FromPort: 443, ToPort: 443, CIDR: "44.1.1.1/32", Description: "hand-made"})
	// 10 (ours) + 10 (their reference to ours) + 20 (office) + 1 = 41.
	st, err := g.Current(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n := len(st.Owned); n != 5 {
		t.Errorf("%d owned entries, want 5: %v", n, st.Owned)
	}
	if p := mustCycle(t, g, d); p.HasChanges() {
		t.Errorf("foreign rules changed the plan: add %v remove %v drift %v", p.Add, p.Remove, p.Drift)
	}
	// 20 more entries need MaxEntries 25, and both references to the list
	// grow with it: 25+25+20+1 > 60. Growing is refused before anything
	// is written (EC2 would refuse the resize half way through).
	g2 := newGroup(t, api, sg, withLists("pd", 30, 1, 60))
	f.ResetCalls()
	_, err = cycle(t, g2, []plan.DesiredSet{set("hooks", plan.Ingress, p443, addrs(25, "44.1.1.%d/32")...)})
	var ge *plan.GuardError
	want := fmt.Sprintf("growing MaxEntries is refused: security group %s has 41 inbound IPv4 rules of rule_limit 60 (2 references to %s, each counting as its MaxEntries 10)", sg, ours)
	if !errors.As(err, &ge) || ge.Guard != plan.GuardEC2MaxEntries || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v\nwant %q", err, want)
	}
	if n := len(mutating(f.Calls())); n != 0 {
		t.Errorf("%d writes after a refusal: %v", n, f.Calls())
	}
	// Room for 9 more: 19 + 19 + 20 + 1 = 59.
	mustCycle(t, g2, []plan.DesiredSet{set("hooks", plan.Ingress, p443, addrs(14, "44.1.1.%d/32")...)})
	// Nothing of theirs is touched by a shrink either.
	mustCycle(t, g2, []plan.DesiredSet{set("hooks", plan.Ingress, p443, addrs(2, "44.1.1.%d/32")...)})
	var kept int
	for _, r := range f.Rules(sg) {
		if r.Description == "ssh from the hooks" || r.PrefixList == office || r.Description == "hand-made" {
			kept++
		}
	}
	if kept != 3 {
		t.Errorf("%d of 3 foreign rules left: %+v", kept, f.Rules(sg))
	}
}

// The pre-check counts each reference as its list's MaxEntries, with the
// other rules of the group, per direction and family, before anything
// is written.
func TestGroupPrefixListsRuleLimit(t *testing.T) {
	f := ec2fake.New()
	defer f.Close()
	sg := f.AddGroup()
	for i := 1; i <= 15; i++ {
		f.AddRule(ec2fake.Rule{GroupID: sg, Protocol: "tcp", FromPort: 22, ToPort: 22, CIDR: fmt.Sprintf("10.0.0.%d/32", i)})
	}
	api, _ := testClient(f.URL)
	g := newGroup(t, api, sg, withLists("pd", 15, 3, 60))
	d := []plan.DesiredSet{set("hooks", plan.Ingress, []uint16{443, 8443}, addrs(20, "44.1.1.%d/32")...)}
	_, err := cycle(t, g, d)
	var ge *plan.GuardError
	want := "the group would hold 75 ingress IPv4 rules (60 ours: 4 references to the prefix lists pd… counting 60 as their MaxEntries, 0 per CIDR, 0 other references; 15 others), more than rule_limit 60"
	if !errors.As(err, &ge) || ge.Guard != plan.GuardEC2RuleLimit || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v\nwant %q", err, want)
	}
	if n := len(mutating(f.Calls())); n != 0 {
		t.Errorf("%d writes after a refusal: %v", n, f.Calls())
	}
	// One port fits: 2 lists of 15 = 30, plus 15.
	d[0].Ports = p443
	mustCycle(t, g, d)
	if diff := cmp.Diff([]string{"in 443 pd", "in 443 pd-2"}, refsOf(t, f, sg)); diff != "" {
		t.Errorf("references (-want +got):\n%s", diff)
	}
}

// Sets the lists cannot serve are refused before anything is written: one
// series allows all its addresses on every port referencing it.
func TestGroupPrefixListsSetsMustShareDirectionAndPorts(t *testing.T) {
	f := ec2fake.New()
	defer f.Close()
	sg := f.AddGroup()
	api, _ := testClient(f.URL)
	g := newGroup(t, api, sg, withLists("pd", 10, 1, 60))
	_, err := cycle(t, g, []plan.DesiredSet{
		set("hooks", plan.Ingress, p443, "44.1.1.1/32"),
		set("api", plan.Ingress, []uint16{8443}, "44.1.1.2/32"),
	})
	var ge *plan.GuardError
	if !errors.As(err, &ge) || ge.Guard != plan.GuardEC2Overlap ||
		!strings.Contains(err.Error(), "prefix_lists: sets hooks (ingress tcp/443) and api (ingress tcp/8443) differ in direction, protocol or ports") {
		t.Fatalf("err = %v", err)
	}
	if n := len(mutating(f.Calls())); n != 0 {
		t.Errorf("%d writes after a refusal: %v", n, f.Calls())
	}
}

// A list of the series someone else made (not tagged as ours, or ours
// under another owner id) is never referenced nor filled.
func TestGroupPrefixListsRefusesForeignListOfTheName(t *testing.T) {
	f := ec2fake.New()
	defer f.Close()
	sg := f.AddGroup()
	f.AddPrefixList("pd", "IPv4", 10)
	api, _ := testClient(f.URL)
	g := newGroup(t, api, sg, withLists("pd", 10, 1, 60))
	_, err := cycle(t, g, []plan.DesiredSet{set("hooks", plan.Ingress, p443, "44.1.1.1/32")})
	var ge *plan.GuardError
	if !errors.As(err, &ge) || !strings.Contains(err.Error(), "prefix list pd (") || !strings.Contains(err.Error(), "is not tagged as ours") {
		t.Fatalf("err = %v", err)
	}
	if n := len(mutating(f.Calls())); n != 0 || len(f.Rules(sg)) != 0 {
		t.Errorf("writes after a refusal: %v, rules %v", f.Calls(), f.Rules(sg))
	}
	// Another installation's list of the name: also refused.
	f2 := ec2fake.New()
	defer f2.Close()
	sg2 := f2.AddGroup()
	api2, _ := testClient(f2.URL)
	other, err := NewGroup(api2, "us-east-1", GroupOptions{GroupID: sg2, RuleLimit: 60, PrefixLists: "pd", MaxEntries: 10}, spec(sg2), sink.Env{OwnerID: "blue"})
	if err != nil {
		t.Fatal(err)
	}
	mustCycle(t, other, []plan.DesiredSet{set("hooks", plan.Ingress, p443, "44.1.1.1/32")})
	sg3 := f2.AddGroup()
	mine, err := NewGroup(api2, "us-east-1", GroupOptions{GroupID: sg3, RuleLimit: 60, PrefixLists: "pd", MaxEntries: 10}, spec(sg3), sink.Env{OwnerID: "green"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cycle(t, mine, []plan.DesiredSet{set("hooks", plan.Ingress, p443, "44.1.1.2/32")}); err == nil || !strings.Contains(err.Error(), "is not tagged as ours") {
		t.Errorf("another owner's list: err = %v", err)
	}
	if len(f2.Rules(sg3)) != 0 {
		t.Errorf("rules written: %v", f2.Rules(sg3))
	}
}

// Switching a group of rules per CIDR to prefix_lists fills and
// references the lists before the rules go; switching back adds the rules
// before the references go. No address is missing in between.
func TestGroupPrefixListsSwitchBothWays(t *testing.T) {
	f := ec2fake.New()
	defer f.Close()
	sg := f.AddGroup()
	api, _ := testClient(f.URL)
	d := []plan.DesiredSet{set("hooks", plan.Ingress, p443, "44.1.1.1/32", "44.1.1.2/32", "2001:db9::1/128")}
	mustCycle(t, newGroup(t, api, sg, nil), d)
	// Every write must leave both addresses allowed.
	allowed := func() bool {
		has := map[string]bool{}
		for _, r := range f.Rules(sg) {
			if r.CIDR != "" {
				has[r.CIDR] = true
			} else if l, ok := f.List(r.PrefixList); ok {
				for _, e := range l.Entries {
					has[e.CIDR] = true
				}
			}
		}
		return has["44.1.1.1/32"] && has["44.1.1.2/32"] && has["2001:db9::1/128"]
	}
	var gaps []string
	check := func(stage string) {
		if !allowed() {
			gaps = append(gaps, stage)
		}
	}
	// Checked before every write that could take something away.
	for _, op := range []string{"RevokeSecurityGroupIngress", "ModifyManagedPrefixList", "DeleteManagedPrefixList"} {
		f.Inject(ec2fake.Fault{Action: op, Times: 100, Before: func(*ec2fake.Fake) { check("before " + op) }})
	}
	lists := newGroup(t, api, sg, withLists("pd", 10, 1, 60))
	st, err := lists.Current(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Drift) != 1 || !strings.Contains(st.Drift[0], "2 rules of ours allow one IPv4 CIDR each; they move into the prefix lists pd") {
		t.Errorf("drift %v", st.Drift)
	}
	mustCycle(t, lists, d)
	check("after the switch")
	want := []ec2fake.Rule{
		{GroupID: sg, Protocol: "tcp", FromPort: 443, ToPort: 443, CIDR: "2001:db9::1/128", Description: "pdsafelist:hooks"},
	}
	var cidrRules []ec2fake.Rule
	for _, r := range f.Rules(sg) {
		if r.CIDR != "" {
			r.Tags = nil
			cidrRules = append(cidrRules, r)
		}
	}
	if diff := cmp.Diff(want, cidrRules); diff != "" {
		t.Errorf("rules per CIDR after the switch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"in 443 pd"}, refsOf(t, f, sg)); diff != "" {
		t.Errorf("references (-want +got):\n%s", diff)
	}
	if p := mustCycle(t, lists, d); p.HasChanges() {
		t.Errorf("after the switch: %v %v %v", p.Add, p.Remove, p.Drift)
	}
	// Back to rules per CIDR: the stray reference goes after the rules
	// are in place.
	plain := newGroup(t, api, sg, nil)
	st, err = plain.Current(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Drift) != 1 || !strings.Contains(st.Drift[0], "1 rules of ours reference prefix lists, and prefix_lists is not set") {
		t.Errorf("drift %v", st.Drift)
	}
	mustCycle(t, plain, d)
	check("after switching back")
	if refs := refsOf(t, f, sg); len(refs) != 0 {
		t.Errorf("references left: %v", refs)
	}
	if p := mustCycle(t, plain, d); p.HasChanges() {
		t.Errorf("after switching back: %v %v %v", p.Add, p.Remove, p.Drift)
	}
	if len(gaps) > 0 {
		t.Errorf("an address was missing: %v", gaps)
	}
}

// A reference of ours is revoked once no list holds anything for it, and
// an authorize that finds the reference already there re-reads.
func TestGroupPrefixListsDuplicateReferenceRereads(t *testing.T) {
	f := ec2fake.New()
	defer f.Close()
	sg := f.AddGroup()
	api, _ := testClient(f.URL)
	g := newGroup(t, api, sg, withLists("pd", 10, 1, 60))
	d := []plan.DesiredSet{set("hooks", plan.Ingress, p443, "44.1.1.1/32")}
	// Another run adds the reference between our read and our authorize.
	f.Inject(ec2fake.Fault{Action: "AuthorizeSecurityGroupIngress", Before: func(f *ec2fake.Fake) {
		id, _ := f.ListByName("pd")
		f.AddRule(ec2fake.Rule{GroupID: sg, Protocol: "tcp", FromPort: 443, ToPort: 443, PrefixList: id, Description: "pdsafelist:prefix_lists"})
	}})
	mustCycle(t, g, d)
	if diff := cmp.Diff([]string{"in 443 pd"}, refsOf(t, f, sg)); diff != "" {
		t.Errorf("references (-want +got):\n%s", diff)
	}
	if p := mustCycle(t, g, d); p.HasChanges() {
		t.Errorf("second run: %v %v %v", p.Add, p.Remove, p.Drift)
	}
}

func TestGroupPrefixListsOptions(t *testing.T) {
	for _, tc := range []struct {
		o    GroupOptions
		want string
	}{
		{GroupOptions{MaxEntries: 10}, "max_entries, max_lists and family size the lists of prefix_lists, which is not set"},
		{GroupOptions{PrefixLists: "pl-0123456789abcdef0"}, "prefix_lists \"pl-0123456789abcdef0\": want a list name"},
		{GroupOptions{PrefixLists: "pd", MaxEntries: 1001}, "max_entries 1001: want 1 to 1000"},
		{GroupOptions{PrefixLists: "pd", MaxLists: 101}, "max_lists 101: want 1 to 100"},
		{GroupOptions{PrefixLists: "pd", Family: "ipx"}, "family \"ipx\": want ipv4 or ipv6"},
		{GroupOptions{PrefixLists: "com.amazonaws.us-east-1.s3"}, "AWS-managed"},
		{GroupOptions{PrefixLists: "pd", AWSOptions: AWSOptions{OwnerID: "r&d"}}, "a prefix list may not contain &"},
	} {
		tc.o.GroupID, tc.o.RuleLimit = "sg-0123456789abcdef0", 60
		_, err := NewGroup(nil, "us-east-1", tc.o, spec("x"), sink.Env{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err = %v, want %q", tc.o, err, tc.want)
		}
	}
}

// Against moto: a 2,500-prefix set over three lists of 1,000, referenced
// from one group on one port, with the API calls of a first and a
// no-change run; then a shrink to 900 converges in one run (the emptied
// lists lose their references and are deleted), and the next run is
// quiet.
func TestGroupPrefixListsMoto(t *testing.T) {
	url := motoServer(t)
	c, _ := testClient(url)
	ctx := context.Background()
	sg := motoGroup(t, c)
	big := make([]string, 0, 2500)
	for i := range 2500 {
		big = append(big, fmt.Sprintf("20.%d.%d.0/24", 40+i/250, i%250))
	}
	counted := &flaky{API: c}
	g := newGroup(t, counted, sg, withLists("actions", 1000, 3, 3000))
	d := []plan.DesiredSet{set("actions", plan.Ingress, p443, big...)}
	mustCycle(t, g, d)
	writes, calls := counted.count(), counted.total()
	listIDs := func() map[string]string {
		out, err := c.DescribeManagedPrefixLists(ctx, &ec2.DescribeManagedPrefixListsInput{})
		if err != nil {
			t.Fatal(err)
		}
		ids := map[string]string{}
		for _, pl := range out.PrefixLists {
			if aws.ToString(pl.OwnerId) != "AWS" && !strings.HasPrefix(string(pl.State), "delete-") {
				ids[aws.ToString(pl.PrefixListId)] = aws.ToString(pl.PrefixListName)
			}
		}
		return ids
	}
	refs := func() []string {
		ids := listIDs()
		var out []string
		for _, r := range motoRefs(t, c, sg) {
			out = append(out, fmt.Sprintf("%d %s", aws.ToInt32(r.FromPort), ids[aws.ToString(r.PrefixListId)]))
		}
		return sortedStrings(out)
	}
	if diff := cmp.Diff([]string{"443 actions", "443 actions-2", "443 actions-3"}, refs()); diff != "" {
		t.Errorf("references (-want +got):\n%s", diff)
	}
	sizes := map[string]int{}
	for id, name := range listIDs() {
		out, err := c.GetManagedPrefixListEntries(ctx, &ec2.GetManagedPrefixListEntriesInput{PrefixListId: aws.String(id)})
		if err != nil {
			t.Fatal(err)
		}
		sizes[name] = len(out.Entries)
	}
	if diff := cmp.Diff(map[string]int{"actions": 1000, "actions-2": 1000, "actions-3": 500}, sizes); diff != "" {
		t.Errorf("sizes (-want +got):\n%s", diff)
	}
	if p := mustCycle(t, g, d); p.HasChanges() {
		t.Errorf("second run: %d adds, %d removes, drift %v", len(p.Add), len(p.Remove), p.Drift)
	}
	t.Logf("2500 prefixes over 3 lists from one group: first run %d calls (%d writes); no-change run %d calls (%d writes)",
		calls, writes, counted.total()-calls, counted.count()-writes)
	if n := counted.count() - writes; n != 0 {
		t.Errorf("no-change run wrote %d times", n)
	}
	d = []plan.DesiredSet{set("actions", plan.Ingress, p443, big[:900]...)}
	mustCycle(t, g, d)
	if diff := cmp.Diff([]string{"443 actions"}, refs()); diff != "" {
		t.Errorf("references after the shrink (-want +got):\n%s", diff)
	}
	names := map[string]bool{}
	for _, n := range listIDs() {
		names[n] = true
	}
	if names["actions-2"] || names["actions-3"] || !names["actions"] {
		t.Errorf("lists after the shrink: %v", names)
	}
	if p := mustCycle(t, g, d); p.HasChanges() {
		t.Errorf("run after the shrink: %d adds, %d removes, drift %v", len(p.Add), len(p.Remove), p.Drift)
	}
}

// motoRefs are a group's rules that reference a prefix list.
func motoRefs(t *testing.T, c *ec2.Client, sg string) []types.SecurityGroupRule {
	t.Helper()
	out, err := c.DescribeSecurityGroupRules(context.Background(), &ec2.DescribeSecurityGroupRulesInput{
		Filters: []types.Filter{{Name: aws.String("group-id"), Values: []string{sg}}}})
	if err != nil {
		t.Fatal(err)
	}
	var refs []types.SecurityGroupRule
	for _, r := range out.SecurityGroupRules {
		if r.PrefixListId != nil {
			refs = append(refs, r)
		}
	}
	return refs
}

// A list referenced twice from one group (two ports) grows twice as fast
// against that group's quota. The growth pre-check counted it once, so EC2
// refused the resize part way through the apply; now the plan is refused
// before any write.
func TestPrefixListGrowthCountsEachReference(t *testing.T) {
	f := ec2fake.New()
	defer f.Close()
	api, _ := testClient(f.URL)
	small, _ := newList(t, api, "pd", func(o *PrefixListOptions) { o.MaxEntries = 10 })
	mustCycle(t, small, []plan.DesiredSet{set("hooks", plan.Ingress, p443, addrs(10, "44.1.1.%d/32")...)})
	id, _ := f.ListByName("pd")
	sg := f.AddGroup()
	for _, port := range []int32{443, 8443} {
		f.AddRule(ec2fake.Rule{GroupID: sg, Protocol: "tcp", FromPort: port, ToPort: port, PrefixList: id})
	}
	for i := 1; i <= 30; i++ {
		f.AddRule(ec2fake.Rule{GroupID: sg, Protocol: "tcp", FromPort: 22, ToPort: 22, CIDR: fmt.Sprintf("10.0.0.%d/32", i)})
	}
	// 20 + 30 = 50 of 60: room for 5 more entries, not 10.
	l, _ := newList(t, api, "pd", func(o *PrefixListOptions) { o.MaxEntries = 20 })
	f.ResetCalls()
	_, err := cycle(t, l, []plan.DesiredSet{set("hooks", plan.Ingress, p443, addrs(20, "44.1.1.%d/32")...)})
	var ge *plan.GuardError
	want := fmt.Sprintf("security group %s has 50 inbound IPv4 rules of rule_limit 60 (2 references to %s, each counting as its MaxEntries 10)", sg, id)
	if !errors.As(err, &ge) || ge.Guard != plan.GuardEC2MaxEntries || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v\nwant %q", err, want)
	}
	if n := len(mutating(f.Calls())); n != 0 {
		t.Errorf("%d writes after a refusal: %v", n, f.Calls())
	}
	mustCycle(t, l, []plan.DesiredSet{set("hooks", plan.Ingress, p443, addrs(15, "44.1.1.%d/32")...)})
	if got, _ := f.List(id); got.MaxEntries != 15 {
		t.Errorf("MaxEntries %d, want 15", got.MaxEntries)
	}
}

// Under upsert-only a port change keeps the old port's entries, so the
// result is no longer addresses times ports: the new port's reference
// would allow an address the plan keeps on the old port only. Refused.
func TestGroupPrefixListsRefusesResultTheListsCannotExpress(t *testing.T) {
	f := ec2fake.New()
	defer f.Close()
	sg := f.AddGroup()
	api, _ := testClient(f.URL)
	g := newGroup(t, api, sg, withLists("pd", 10, 1, 60))
	mustCycle(t, g, []plan.DesiredSet{set("hooks", plan.Ingress, p443, "44.1.1.1/32", "44.1.1.2/32")})
	f.ResetCalls()
	step := sink.Step{Sink: g, Force: true, Policy: plan.Policies["upsert-only"]}
	_, err := sinktest.Sync(context.Background(), step, []plan.DesiredSet{set("hooks", plan.Ingress, []uint16{8443}, "44.1.1.1/32")})
	var ge *plan.GuardError
	if !errors.As(err, &ge) || !strings.Contains(err.Error(), "prefix_lists: the lists would allow 44.1.1.2/32 on ingress tcp/8443, which the plan does not hold") {
		t.Fatalf("err = %v", err)
	}
	if n := len(mutating(f.Calls())); n != 0 {
		t.Errorf("%d writes after a refusal: %v", n, f.Calls())
	}
}

// family=ipv6: the lists hold the IPv6 addresses, IPv4 ones stay rules
// per CIDR, and each family is counted in its own quota.
func TestGroupPrefixListsIPv6(t *testing.T) {
	f := ec2fake.New()
	defer f.Close()
	sg := f.AddGroup()
	api, _ := testClient(f.URL)
	g := newGroup(t, api, sg, func(o *GroupOptions) { withLists("pd6", 50, 1, 60)(o); o.Family = "ipv6" })
	d := []plan.DesiredSet{set("hooks", plan.Egress, p443, "44.1.1.1/32", "2001:db9::/48", "2001:db9:1::/48")}
	mustCycle(t, g, d)
	id, ok := f.ListByName("pd6")
	if !ok {
		t.Fatal("no list pd6")
	}
	if l, _ := f.List(id); l.Family != "IPv6" || len(l.Entries) != 2 {
		t.Errorf("list %+v", l)
	}
	if diff := cmp.Diff([]string{"out 443 pd6"}, refsOf(t, f, sg)); diff != "" {
		t.Errorf("references (-want +got):\n%s", diff)
	}
	var v4 []string
	for _, r := range f.Rules(sg) {
		if r.CIDR != "" {
			v4 = append(v4, r.CIDR)
		}
	}
	if diff := cmp.Diff([]string{"44.1.1.1/32"}, v4); diff != "" {
		t.Errorf("rules per CIDR (-want +got):\n%s", diff)
	}
	if p := mustCycle(t, g, d); p.HasChanges() {
		t.Errorf("second run: %v %v %v", p.Add, p.Remove, p.Drift)
	}
	// Two ports are two references of 50, 100 IPv6 rules; IPv4 rules do
	// not count.
	g2 := newGroup(t, api, sg, func(o *GroupOptions) { withLists("pd6", 50, 1, 60)(o); o.Family = "ipv6" })
	_, err := cycle(t, g2, []plan.DesiredSet{set("hooks", plan.Egress, []uint16{443, 8443}, "44.1.1.1/32", "2001:db9::/48")})
	if err == nil || !strings.Contains(err.Error(), "the group would hold 100 egress IPv6 rules") {
		t.Errorf("err = %v", err)
	}
}

// An entry someone added by hand to a list of ours is never removed; the
// list keeps the reference it has, so what the entry allows stays, but a
// list holding nothing of ours gets no new reference.
func TestGroupPrefixListsHandAddedEntry(t *testing.T) {
	f := ec2fake.New()
	defer f.Close()
	sg := f.AddGroup()
	api, _ := testClient(f.URL)
	g := newGroup(t, api, sg, withLists("pd", 3, 2, 60))
	mustCycle(t, g, []plan.DesiredSet{set("hooks", plan.Ingress, p443, addrs(5, "44.1.1.%d/32")...)})
	id2, _ := f.ListByName("pd-2")
	l2, _ := f.List(id2)
	if _, err := api.ModifyManagedPrefixList(context.Background(), &ec2.ModifyManagedPrefixListInput{PrefixListId: aws.String(id2),
		CurrentVersion: aws.Int64(l2.Version), AddEntries: []types.AddPrefixListEntry{{Cidr: aws.String("54.9.9.9/32"), Description: aws.String("hand-made")}}}); err != nil {
		t.Fatal(err)
	}
	three := []plan.DesiredSet{set("hooks", plan.Ingress, p443, addrs(3, "44.1.1.%d/32")...)}
	mustCycle(t, g, three)
	if l2, ok := f.List(id2); !ok || len(l2.Entries) != 1 || l2.Entries[0].CIDR != "54.9.9.9/32" {
		t.Fatalf("pd-2 after the shrink: %+v", l2)
	}
	if diff := cmp.Diff([]string{"in 443 pd", "in 443 pd-2"}, refsOf(t, f, sg)); diff != "" {
		t.Errorf("references after the shrink (-want +got):\n%s", diff)
	}
	if p := mustCycle(t, g, three); p.HasChanges() {
		t.Errorf("run after the shrink: %v %v %v", p.Add, p.Remove, p.Drift)
	}
	// With our reference gone, the hand-made entry alone gets no new one.
	f.DeleteRule(sg, ruleID(t, api, sg, id2))
	if p := mustCycle(t, g, three); p.HasChanges() {
		t.Errorf("run without the reference: %v %v %v", p.Add, p.Remove, p.Drift)
	}
	if diff := cmp.Diff([]string{"in 443 pd"}, refsOf(t, f, sg)); diff != "" {
		t.Errorf("references (-want +got):\n%s", diff)
	}
}

// ruleID is the id of the group's rule referencing list.
func ruleID(t *testing.T, api *ec2.Client, sg, list string) string {
	t.Helper()
	out, err := api.DescribeSecurityGroupRules(context.Background(), &ec2.DescribeSecurityGroupRulesInput{
		Filters: []types.Filter{{Name: aws.String("group-id"), Values: []string{sg}}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range out.SecurityGroupRules {
		if aws.ToString(r.PrefixListId) == list {
			return aws.ToString(r.SecurityGroupRuleId)
		}
	}
	t.Fatalf("no rule references %s", list)
	return ""
}
