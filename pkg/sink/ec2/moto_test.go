package ec2

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/google/go-cmp/cmp"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/mototest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	mototest.Stop()
	os.Exit(code)
}

// motoServer returns a freshly reset moto_server's URL.
func motoServer(t *testing.T) string { return mototest.URL(t) }

func motoGroup(t *testing.T, c *ec2.Client) string {
	t.Helper()
	out, err := c.CreateSecurityGroup(context.Background(), &ec2.CreateSecurityGroupInput{
		GroupName: aws.String(strings.ReplaceAll(t.Name(), "/", "-")), Description: aws.String("test")})
	if err != nil {
		t.Fatal(err)
	}
	return *out.GroupId
}

type motoRule struct {
	ID     string
	Egress bool
	Proto  string
	Port   int32
	CIDR   string
	Desc   string
}

func motoRules(t *testing.T, c *ec2.Client, sg string) []motoRule {
	t.Helper()
	out, err := c.DescribeSecurityGroupRules(context.Background(), &ec2.DescribeSecurityGroupRulesInput{
		Filters: []types.Filter{{Name: aws.String("group-id"), Values: []string{sg}}}})
	if err != nil {
		t.Fatal(err)
	}
	var rs []motoRule
	for _, r := range out.SecurityGroupRules {
		rs = append(rs, motoRule{ID: aws.ToString(r.SecurityGroupRuleId), Egress: aws.ToBool(r.IsEgress), Proto: aws.ToString(r.IpProtocol),
			Port: aws.ToInt32(r.FromPort), CIDR: aws.ToString(r.CidrIpv4) + aws.ToString(r.CidrIpv6), Desc: aws.ToString(r.Description)})
	}
	sort.Slice(rs, func(i, j int) bool {
		a, b := rs[i], rs[j]
		if a.Egress != b.Egress {
			return !a.Egress
		}
		if a.CIDR != b.CIDR {
			return a.CIDR < b.CIDR
		}
		return a.Port < b.Port
	})
	return rs
}

func withoutIDs(rs []motoRule) []motoRule {
	out := make([]motoRule, len(rs))
	for i, r := range rs {
		r.ID = ""
		out[i] = r
	}
	return out
}

func TestMotoGroupLifecycle(t *testing.T) {
	url := motoServer(t)
	api, calls := testClient(url)
	ctx := context.Background()
	sg := motoGroup(t, api)
	if _, err := api.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{GroupId: aws.String(sg),
		IpPermissions: []types.IpPermission{{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(22), ToPort: aws.Int32(22),
			IpRanges: []types.IpRange{{CidrIp: aws.String("203.1.113.0/24"), Description: aws.String("ssh from the office")}}}}}); err != nil {
		t.Fatal(err)
	}
	before := motoRules(t, api, sg) // the unrelated ssh rule and moto's default egress rule
	g := newGroup(t, api, sg, nil)
	desired := []plan.DesiredSet{
		set("events", plan.Egress, p443, "198.52.100.1/32", "198.52.100.3/32", "2001:db9::1/128"),
		set("webhooks", plan.Ingress, p443, "193.0.2.1/32", "193.0.2.3/32", "2001:db9:1::/64"),
	}
	calls.take()
	mustCycle(t, g, desired)
	want := []motoRule{
		{Proto: "tcp", Port: 443, CIDR: "193.0.2.1/32", Desc: "pdsafelist:webhooks"},
		{Proto: "tcp", Port: 443, CIDR: "193.0.2.3/32", Desc: "pdsafelist:webhooks"},
		{Proto: "tcp", Port: 443, CIDR: "2001:db9:1::/64", Desc: "pdsafelist:webhooks"},
		{Proto: "tcp", Port: 22, CIDR: "203.1.113.0/24", Desc: "ssh from the office"},
		{Egress: true, Proto: "-1", Port: -1, CIDR: "0.0.0.0/0"},
		{Egress: true, Proto: "tcp", Port: 443, CIDR: "198.52.100.1/32", Desc: "pdsafelist:events"},
		{Egress: true, Proto: "tcp", Port: 443, CIDR: "198.52.100.3/32", Desc: "pdsafelist:events"},
		{Egress: true, Proto: "tcp", Port: 443, CIDR: "2001:db9::1/128", Desc: "pdsafelist:events"},
	}
	wantCalls := map[string]int{"DescribeSecurityGroupRules": 1, "AuthorizeSecurityGroupIngress": 1, "AuthorizeSecurityGroupEgress": 1}
	if diff := cmp.Diff(wantCalls, calls.take()); diff != "" {
		t.Errorf("first sync calls (-want +got):\n%s", diff)
	}
	after := motoRules(t, api, sg)
	if diff := cmp.Diff(want, withoutIDs(after)); diff != "" {
		t.Fatalf("rules (-want +got):\n%s", diff)
	}
	for _, r := range before {
		if !strings.Contains(fmt.Sprint(after), r.ID) {
			t.Errorf("unrelated rule %+v was replaced", r)
		}
	}

	calls.take()
	if p := mustCycle(t, g, desired); p.HasChanges() {
		t.Errorf("second sync plans changes: %+v", p)
	}
	if diff := cmp.Diff(map[string]int{"DescribeSecurityGroupRules": 1}, calls.take()); diff != "" {
		t.Errorf("second sync calls (-want +got):\n%s", diff)
	}

	desired[1] = set("webhooks", plan.Ingress, p443, "193.0.2.1/32", "2001:db9:1::/64")
	calls.take()
	mustCycle(t, g, desired)
	if diff := cmp.Diff(map[string]int{"DescribeSecurityGroupRules": 1, "RevokeSecurityGroupIngress": 1}, calls.take()); diff != "" {
		t.Errorf("shrink calls (-want +got):\n%s", diff)
	}
	var retired motoRule
	for _, r := range after {
		if r.CIDR == "193.0.2.3/32" {
			retired = r
		}
	}
	var wantAfter []motoRule
	for _, r := range after {
		if r != retired {
			wantAfter = append(wantAfter, r)
		}
	}
	if diff := cmp.Diff(wantAfter, motoRules(t, api, sg)); diff != "" {
		t.Errorf("after shrinking (-want +got):\n%s", diff)
	}
}

// moto counts IPv4 and IPv6 against one limit of 60 (real EC2 counts them
// apart; the fake models that). Our check must refuse before EC2 would.
func TestMotoRuleLimit(t *testing.T) {
	url := motoServer(t)
	api, calls := testClient(url)
	sg := motoGroup(t, api) // holds moto's default egress rule
	g := newGroup(t, api, sg, nil)
	fits := []plan.DesiredSet{set("events", plan.Egress, p443, addrs(59, "198.52.100.%d/32")...)}
	mustCycle(t, g, fits)
	if got := len(motoRules(t, api, sg)); got != 60 {
		t.Fatalf("%d rules, want 60", got)
	}
	calls.take()
	_, err := cycle(t, g, []plan.DesiredSet{set("events", plan.Egress, p443, addrs(60, "198.52.100.%d/32")...)})
	var ge *plan.GuardError
	if !errors.As(err, &ge) || ge.Guard != plan.GuardEC2RuleLimit || !strings.Contains(err.Error(), "61 egress IPv4 rules") {
		t.Fatalf("err = %v", err)
	}
	if diff := cmp.Diff(map[string]int{"DescribeSecurityGroupRules": 1}, calls.take()); diff != "" {
		t.Errorf("refused run calls (-want +got):\n%s", diff)
	}
	// Past our check, moto's own limit answers with EC2's error code.
	g2 := newGroup(t, api, sg, func(o *GroupOptions) { o.RuleLimit = 100 })
	if _, err := cycle(t, g2, []plan.DesiredSet{set("events", plan.Egress, p443, addrs(60, "198.52.100.%d/32")...)}); code(err) != "RulesPerSecurityGroupLimitExceeded" {
		t.Errorf("moto's limit: %v", err)
	}
}

func TestMotoPrefixList(t *testing.T) {
	url := motoServer(t)
	api, calls := testClient(url)
	l, _ := newList(t, api, "pagerduty-egress", func(o *PrefixListOptions) { o.MaxEntries = 50 })
	desired := []plan.DesiredSet{
		set("events", plan.Egress, p443, "198.52.100.1/32", "198.52.100.3/32"),
		set("api", plan.Egress, p443, "198.52.100.3/32", "203.1.113.5/32", "2001:db9::5/128"),
	}
	mustCycle(t, l, desired)
	list := func() (string, []string) {
		out, err := api.DescribeManagedPrefixLists(context.Background(), &ec2.DescribeManagedPrefixListsInput{})
		if err != nil {
			t.Fatal(err)
		}
		var id string
		var names []string
		for _, pl := range out.PrefixLists {
			names = append(names, aws.ToString(pl.PrefixListName))
			if aws.ToString(pl.PrefixListName) == "pagerduty-egress" {
				id = *pl.PrefixListId
			}
		}
		if id == "" {
			t.Fatalf("no list pagerduty-egress among %v", names)
		}
		es, err := api.GetManagedPrefixListEntries(context.Background(), &ec2.GetManagedPrefixListEntriesInput{PrefixListId: &id})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range es.Entries {
			got = append(got, *e.Cidr+" "+aws.ToString(e.Description))
		}
		sort.Strings(got)
		return id, got
	}
	calls.take()
	_, got := list()
	want := []string{"198.52.100.1/32 pdsafelist:events", "198.52.100.3/32 pdsafelist:api", "203.1.113.5/32 pdsafelist:api"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}
	calls.take()
	if p := mustCycle(t, l, desired); p.HasChanges() {
		t.Errorf("second run: %+v", p)
	}
	if diff := cmp.Diff(map[string]int{"DescribeManagedPrefixLists": 1, "GetManagedPrefixListEntries": 1}, calls.take()); diff != "" {
		t.Errorf("second run calls (-want +got):\n%s", diff)
	}
	desired[0] = set("events", plan.Egress, p443, "198.52.100.3/32")
	calls.take()
	mustCycle(t, l, desired)
	wantCalls := map[string]int{"DescribeManagedPrefixLists": 2, "GetManagedPrefixListEntries": 1, "ModifyManagedPrefixList": 1}
	if diff := cmp.Diff(wantCalls, calls.take()); diff != "" {
		t.Errorf("shrink calls (-want +got):\n%s", diff)
	}
	_, got = list()
	want = []string{"198.52.100.3/32 pdsafelist:api", "203.1.113.5/32 pdsafelist:api"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("after shrinking (-want +got):\n%s", diff)
	}
	// The list keeps its name, so the next run finds it again.
	if p := mustCycle(t, l, desired); p.HasChanges() {
		t.Errorf("run after shrinking: %+v", p)
	}
}

// snapshotSets builds the default four sets (US) from the demo snapshot.
func snapshotSets(t *testing.T) []plan.DesiredSet {
	t.Helper()
	dir := filepath.Join("..", "..", "..", "testdata", "snapshot")
	var dns struct {
		Records map[string]struct {
			A    []string `json:"a"`
			AAAA []string `json:"aaaa"`
		} `json:"records"`
	}
	read := func(name string, v any) {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, v); err != nil {
			t.Fatal(err)
		}
	}
	read("dns.json", &dns)
	var restAPI, hooks []string
	read("rest-api-us-service-region-json", &restAPI)
	read("webhooks-us-service-region-json", &hooks)
	host := func(name string) []string {
		r := dns.Records[name]
		return append(append([]string(nil), r.A...), r.AAAA...)
	}
	mk := func(name string, dir plan.Direction, addrs []string) plan.DesiredSet {
		var ps []netip.Prefix
		for _, a := range addrs {
			ps = append(ps, netip.PrefixFrom(netip.MustParseAddr(a), netip.MustParseAddr(a).BitLen()))
		}
		agg, err := plan.Aggregate(ps)
		if err != nil {
			t.Fatal(err)
		}
		return plan.DesiredSet{Name: name, Direction: dir, Protocol: plan.TCP, Ports: p443, Prefixes: agg}
	}
	return []plan.DesiredSet{
		mk("events", plan.Egress, host("events.gslb.pagerduty.com")),
		mk("api", plan.Egress, append(host("api.gslb.pagerduty.com"), restAPI...)),
		mk("app", plan.Egress, host("app.pagerduty.com")),
		mk("webhooks", plan.Ingress, hooks),
	}
}

// TestMotoCallCounts is the measure: the default sets into one
// group cost one read plus one authorize per direction, then one read.
func TestMotoCallCounts(t *testing.T) {
	url := motoServer(t)
	api, calls := testClient(url)
	sg := motoGroup(t, api)
	g := newGroup(t, api, sg, nil)
	desired := snapshotSets(t)
	calls.take()
	p := mustCycle(t, g, desired)
	first := calls.take()
	mustCycle(t, g, desired)
	second := calls.take()
	t.Logf("default sets: %d rules added; first sync calls %v; second sync calls %v", len(p.Add), first, second)
	// One rule per address: the snapshot's sets share none and use one port.
	want := 0
	for _, d := range desired {
		want += len(d.Prefixes)
	}
	if len(p.Add) != want || want < 25 {
		t.Errorf("%d rules from the snapshot's %d addresses", len(p.Add), want)
	}
	wantFirst := map[string]int{"DescribeSecurityGroupRules": 1, "AuthorizeSecurityGroupEgress": 1, "AuthorizeSecurityGroupIngress": 1}
	if diff := cmp.Diff(wantFirst, first); diff != "" {
		t.Errorf("first sync (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int{"DescribeSecurityGroupRules": 1}, second); diff != "" {
		t.Errorf("second sync (-want +got):\n%s", diff)
	}
}

// The claim contract against moto: the labelling set drops an address the
// api set still wants (one ModifySecurityGroupRules, no revoke), then api's
// list fails in the same run as A leaves its answer (nothing revoked), and
// re-runs stay at one describe.
func TestMotoRelabelAndFrozenSet(t *testing.T) {
	url := motoServer(t)
	api, calls := testClient(url)
	sg := motoGroup(t, api)
	g := newGroup(t, api, sg, nil)
	mustCycle(t, g, []plan.DesiredSet{set("events", plan.Egress, p443, shared, other, "2001:db9::7/128")})
	rules := func() []motoRule {
		var out []motoRule
		for _, r := range withoutIDs(motoRules(t, api, sg)) {
			if r.Proto == "tcp" {
				out = append(out, r)
			}
		}
		return out
	}
	calls.take()
	dropped := []plan.DesiredSet{
		set("api", plan.Egress, p443, shared, "2001:db9::7/128"),
		set("events", plan.Egress, p443, other),
	}
	mustCycle(t, g, dropped)
	if diff := cmp.Diff(map[string]int{"DescribeSecurityGroupRules": 1, "ModifySecurityGroupRules": 1}, calls.take()); diff != "" {
		t.Errorf("relabel calls (-want +got):\n%s", diff)
	}
	want := []motoRule{
		{Egress: true, Proto: "tcp", Port: 443, CIDR: other, Desc: "pdsafelist:events"},
		{Egress: true, Proto: "tcp", Port: 443, CIDR: shared, Desc: "pdsafelist:api"},
		{Egress: true, Proto: "tcp", Port: 443, CIDR: "2001:db9::7/128", Desc: "pdsafelist:api"},
	}
	if diff := cmp.Diff(want, rules()); diff != "" {
		t.Errorf("rules after the relabel (-want +got):\n%s", diff)
	}
	if p := mustCycle(t, g, dropped); p.HasChanges() {
		t.Errorf("not stable after the relabel: %+v", p)
	}
	calls.take()

	// api drops both: events takes A back in place, the IPv6 rule goes.
	// Then A leaves events as api's list fails: api's LastKnown vouches.
	mustCycle(t, g, []plan.DesiredSet{set("api", plan.Egress, p443), set("events", plan.Egress, p443, shared, other)})
	wantCalls := map[string]int{"DescribeSecurityGroupRules": 1, "ModifySecurityGroupRules": 1, "RevokeSecurityGroupEgress": 1}
	if diff := cmp.Diff(wantCalls, calls.take()); diff != "" {
		t.Errorf("hand back calls (-want +got):\n%s", diff)
	}
	want = []motoRule{
		{Egress: true, Proto: "tcp", Port: 443, CIDR: other, Desc: "pdsafelist:events"},
		{Egress: true, Proto: "tcp", Port: 443, CIDR: shared, Desc: "pdsafelist:events"},
	}
	if diff := cmp.Diff(want, rules()); diff != "" {
		t.Errorf("rules after api dropped both (-want +got):\n%s", diff)
	}
	calls.take()
	froze := []plan.DesiredSet{frozen("api", plan.Egress, p443, shared), set("events", plan.Egress, p443, other)}
	for run := 1; run <= 2; run++ {
		if p := mustCycle(t, g, froze); p.HasChanges() {
			t.Errorf("run %d with api frozen: add %v remove %v", run, p.Add, p.Remove)
		}
	}
	if diff := cmp.Diff(map[string]int{"DescribeSecurityGroupRules": 2}, calls.take()); diff != "" {
		t.Errorf("frozen runs calls (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, rules()); diff != "" {
		t.Errorf("rules with api frozen (-want +got):\n%s", diff)
	}
}
