package ec2

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/sink/sinktest"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/ec2fake"
)

const noFiles = "the sink writes through the EC2 API, not files"

var groupHarness = sinktest.Harness{Type: "ec2", Skip: map[sinktest.Case]string{sinktest.FileDirectory: noFiles}}

var listHarness = sinktest.Harness{Type: "ec2-prefix-list", Skip: map[sinktest.Case]string{
	sinktest.FileDirectory:    noFiles,
	sinktest.UnreadableRecord: "an entry's description cannot be rewritten without removing its address for a moment, so an edited label stays; TestPrefixListEditedDescriptionRemovesNothing shows its entries are kept"}}

func TestConformanceGroupFake(t *testing.T) {
	h := groupHarness
	h.New = func(t testing.TB) *sinktest.Target { return groupTarget(t, fakeBackend(t)) }
	sinktest.Run(t, h)
}

func TestConformanceGroupMoto(t *testing.T) {
	url := motoServer(t)
	h := groupHarness
	h.New = func(t testing.TB) *sinktest.Target { return groupTarget(t, motoBackend(url)) }
	sinktest.Run(t, h)
}

func TestConformancePrefixListFake(t *testing.T) {
	h := listHarness
	h.New = func(t testing.TB) *sinktest.Target { return listTarget(t, fakeBackend(t)) }
	sinktest.Run(t, h)
}

func TestConformancePrefixListMoto(t *testing.T) {
	url := motoServer(t)
	h := listHarness
	h.New = func(t testing.TB) *sinktest.Target { return listTarget(t, motoBackend(url)) }
	sinktest.Run(t, h)
}

// backend is an EC2 endpoint and a way to make an empty group there.
type backend struct {
	url      string
	newGroup func(t testing.TB, api *ec2.Client) string
}

func fakeBackend(t testing.TB) backend {
	f := ec2fake.New()
	t.Cleanup(f.Close)
	return backend{url: f.URL, newGroup: func(testing.TB, *ec2.Client) string { return f.AddGroup() }}
}

var motoNames atomic.Int64

// motoBackend shares one moto_server; every target gets its own group
// and list name, so targets never see each other.
func motoBackend(url string) backend {
	return backend{url: url, newGroup: func(t testing.TB, api *ec2.Client) string {
		out, err := api.CreateSecurityGroup(context.Background(), &ec2.CreateSecurityGroupInput{
			GroupName: aws.String(fmt.Sprintf("sinktest-%d", motoNames.Add(1))), Description: aws.String("sinktest")})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(out.GroupId)
	}}
}

// flaky passes calls to the backend, counts the mutating ones, and when
// armed fails the first call after a change has gone through, so an
// apply stops part way.
type flaky struct {
	API
	mu      sync.Mutex
	writes  int
	calls   int
	armed   bool
	changed bool
}

var errInjected = &smithy.GenericAPIError{Code: "SinktestInjected", Message: "injected failure after a change"}

func do[I, O any](f *flaky, op string, fn func(context.Context, I, ...func(*ec2.Options)) (O, error), ctx context.Context, in I, opts []func(*ec2.Options)) (O, error) {
	f.mu.Lock()
	if f.armed && f.changed {
		f.armed, f.changed = false, false
		f.mu.Unlock()
		var zero O
		return zero, errInjected
	}
	f.calls++
	if ec2fake.Mutating(op) {
		f.writes++
	}
	f.mu.Unlock()
	out, err := fn(ctx, in, opts...)
	if err == nil && ec2fake.Mutating(op) {
		f.mu.Lock()
		f.changed = f.armed
		f.mu.Unlock()
	}
	return out, err
}

func (f *flaky) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.writes
}

// total counts every call, reads included.
func (f *flaky) total() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func (f *flaky) arm() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.armed, f.changed = true, false
}

func (f *flaky) DescribeSecurityGroups(ctx context.Context, in *ec2.DescribeSecurityGroupsInput, o ...func(*ec2.Options)) (*ec2.DescribeSecurityGroupsOutput, error) {
	return do(f, "DescribeSecurityGroups", f.API.DescribeSecurityGroups, ctx, in, o)
}
func (f *flaky) DescribeSecurityGroupRules(ctx context.Context, in *ec2.DescribeSecurityGroupRulesInput, o ...func(*ec2.Options)) (*ec2.DescribeSecurityGroupRulesOutput, error) {
	return do(f, "DescribeSecurityGroupRules", f.API.DescribeSecurityGroupRules, ctx, in, o)
}
func (f *flaky) AuthorizeSecurityGroupIngress(ctx context.Context, in *ec2.AuthorizeSecurityGroupIngressInput, o ...func(*ec2.Options)) (*ec2.AuthorizeSecurityGroupIngressOutput, error) {
	return do(f, "AuthorizeSecurityGroupIngress", f.API.AuthorizeSecurityGroupIngress, ctx, in, o)
}
func (f *flaky) AuthorizeSecurityGroupEgress(ctx context.Context, in *ec2.AuthorizeSecurityGroupEgressInput, o ...func(*ec2.Options)) (*ec2.AuthorizeSecurityGroupEgressOutput, error) {
	return do(f, "AuthorizeSecurityGroupEgress", f.API.AuthorizeSecurityGroupEgress, ctx, in, o)
}
func (f *flaky) RevokeSecurityGroupIngress(ctx context.Context, in *ec2.RevokeSecurityGroupIngressInput, o ...func(*ec2.Options)) (*ec2.RevokeSecurityGroupIngressOutput, error) {
	return do(f, "RevokeSecurityGroupIngress", f.API.RevokeSecurityGroupIngress, ctx, in, o)
}
func (f *flaky) RevokeSecurityGroupEgress(ctx context.Context, in *ec2.RevokeSecurityGroupEgressInput, o ...func(*ec2.Options)) (*ec2.RevokeSecurityGroupEgressOutput, error) {
	return do(f, "RevokeSecurityGroupEgress", f.API.RevokeSecurityGroupEgress, ctx, in, o)
}
func (f *flaky) ModifySecurityGroupRules(ctx context.Context, in *ec2.ModifySecurityGroupRulesInput, o ...func(*ec2.Options)) (*ec2.ModifySecurityGroupRulesOutput, error) {
	return do(f, "ModifySecurityGroupRules", f.API.ModifySecurityGroupRules, ctx, in, o)
}
func (f *flaky) DescribeManagedPrefixLists(ctx context.Context, in *ec2.DescribeManagedPrefixListsInput, o ...func(*ec2.Options)) (*ec2.DescribeManagedPrefixListsOutput, error) {
	return do(f, "DescribeManagedPrefixLists", f.API.DescribeManagedPrefixLists, ctx, in, o)
}
func (f *flaky) GetManagedPrefixListEntries(ctx context.Context, in *ec2.GetManagedPrefixListEntriesInput, o ...func(*ec2.Options)) (*ec2.GetManagedPrefixListEntriesOutput, error) {
	return do(f, "GetManagedPrefixListEntries", f.API.GetManagedPrefixListEntries, ctx, in, o)
}
func (f *flaky) ModifyManagedPrefixList(ctx context.Context, in *ec2.ModifyManagedPrefixListInput, o ...func(*ec2.Options)) (*ec2.ModifyManagedPrefixListOutput, error) {
	return do(f, "ModifyManagedPrefixList", f.API.ModifyManagedPrefixList, ctx, in, o)
}
func (f *flaky) CreateManagedPrefixList(ctx context.Context, in *ec2.CreateManagedPrefixListInput, o ...func(*ec2.Options)) (*ec2.CreateManagedPrefixListOutput, error) {
	return do(f, "CreateManagedPrefixList", f.API.CreateManagedPrefixList, ctx, in, o)
}

func (f *flaky) DeleteManagedPrefixList(ctx context.Context, in *ec2.DeleteManagedPrefixListInput, o ...func(*ec2.Options)) (*ec2.DeleteManagedPrefixListOutput, error) {
	return do(f, "DeleteManagedPrefixList", f.API.DeleteManagedPrefixList, ctx, in, o)
}

// ipPermission is one rule for e, labelled desc.
func ipPermission(e plan.Entry, desc string) types.IpPermission {
	p := types.IpPermission{IpProtocol: aws.String(e.Protocol.String()), FromPort: aws.Int32(int32(e.Port)), ToPort: aws.Int32(int32(e.Port))}
	if e.Prefix.Addr().Is6() {
		p.Ipv6Ranges = []types.Ipv6Range{{CidrIpv6: aws.String(e.Prefix.String()), Description: aws.String(desc)}}
	} else {
		p.IpRanges = []types.IpRange{{CidrIp: aws.String(e.Prefix.String()), Description: aws.String(desc)}}
	}
	return p
}

func groupTarget(t testing.TB, b backend) *sinktest.Target {
	t.Helper()
	raw, _ := testClient(b.url)
	ctx := context.Background()
	api := &flaky{API: raw}
	id := b.newGroup(t, raw)
	openWith := func(o AWSOptions, env sink.Env) (sink.Sink, error) {
		return NewGroup(api, "us-east-1", GroupOptions{GroupID: id, RuleLimit: DefaultRuleLimit, AWSOptions: o}, spec(id), env)
	}
	open := func(t testing.TB) sink.Sink {
		t.Helper()
		g, err := NewGroup(api, "us-east-1", GroupOptions{GroupID: id, RuleLimit: DefaultRuleLimit}, spec(id), sink.Env{})
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	rules := func(t testing.TB) []types.SecurityGroupRule {
		t.Helper()
		out, err := raw.DescribeSecurityGroupRules(ctx, &ec2.DescribeSecurityGroupRulesInput{
			Filters: []types.Filter{{Name: aws.String("group-id"), Values: []string{id}}}})
		if err != nil {
			t.Fatal(err)
		}
		return out.SecurityGroupRules
	}
	authorize := func(t testing.TB, e plan.Entry, desc string) {
		t.Helper()
		perms := []types.IpPermission{ipPermission(e, desc)}
		var err error
		if e.Direction == plan.Egress {
			_, err = raw.AuthorizeSecurityGroupEgress(ctx, &ec2.AuthorizeSecurityGroupEgressInput{GroupId: aws.String(id), IpPermissions: perms})
		} else {
			_, err = raw.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{GroupId: aws.String(id), IpPermissions: perms})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return &sinktest.Target{
		Open:    open,
		Hostile: hostileAWS(openWith),
		Writes:  func(testing.TB) int { return api.count() },
		Snapshot: func(t testing.TB) string {
			var lines []string
			for _, r := range rules(t) {
				dir := "ingress"
				if aws.ToBool(r.IsEgress) {
					dir = "egress"
				}
				lines = append(lines, fmt.Sprintf("%s %s %d-%d %s%s %q", dir, aws.ToString(r.IpProtocol), aws.ToInt32(r.FromPort), aws.ToInt32(r.ToPort),
					aws.ToString(r.CidrIpv4), aws.ToString(r.CidrIpv6), aws.ToString(r.Description)))
			}
			slices.Sort(lines)
			return strings.Join(lines, "\n")
		},
		InjectOwned:   func(t testing.TB, e plan.Entry) { authorize(t, e, sink.Marker("", e.Set)) },
		InjectForeign: func(t testing.TB, e plan.Entry) { authorize(t, e, "hand-made rule") },
		// Revoke one of our rules by hand.
		Drift: func(t testing.TB) {
			for _, r := range rules(t) {
				if _, ours := sink.ParseMarker("", aws.ToString(r.Description)); !ours {
					continue
				}
				ids := []string{aws.ToString(r.SecurityGroupRuleId)}
				var err error
				if aws.ToBool(r.IsEgress) {
					_, err = raw.RevokeSecurityGroupEgress(ctx, &ec2.RevokeSecurityGroupEgressInput{GroupId: aws.String(id), SecurityGroupRuleIds: ids})
				} else {
					_, err = raw.RevokeSecurityGroupIngress(ctx, &ec2.RevokeSecurityGroupIngressInput{GroupId: aws.String(id), SecurityGroupRuleIds: ids})
				}
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			t.Fatal("no rule of ours to revoke")
		},
		FailNext: func(testing.TB) { api.arm() },
		// Every description of ours edited by hand (issue 20 item 3).
		Unlabel: func(t testing.TB) {
			var updates []types.SecurityGroupRuleUpdate
			for _, r := range rules(t) {
				if _, ours := sink.ParseMarker("", aws.ToString(r.Description)); !ours {
					continue
				}
				req := &types.SecurityGroupRuleRequest{IpProtocol: r.IpProtocol, FromPort: r.FromPort, ToPort: r.ToPort,
					CidrIpv4: r.CidrIpv4, CidrIpv6: r.CidrIpv6, Description: aws.String("pdsafelist:PagerDuty rule edited by ops")}
				updates = append(updates, types.SecurityGroupRuleUpdate{SecurityGroupRuleId: r.SecurityGroupRuleId, SecurityGroupRule: req})
			}
			if len(updates) == 0 {
				t.Fatal("no rule of ours to edit")
			}
			if _, err := raw.ModifySecurityGroupRules(ctx, &ec2.ModifySecurityGroupRulesInput{GroupId: aws.String(id), SecurityGroupRules: updates}); err != nil {
				t.Fatal(err)
			}
		},
		Tamper: map[string]func(testing.TB){
			// The configured group is gone (deleted, or the wrong
			// account): refused, nothing created elsewhere.
			"missing-group": func(testing.TB) { id = "sg-00000000deadbeef" },
		},
	}
}

func listTarget(t testing.TB, b backend) *sinktest.Target {
	t.Helper()
	raw, _ := testClient(b.url)
	ctx := context.Background()
	api := &flaky{API: raw}
	name := fmt.Sprintf("sinktest-list-%d", motoNames.Add(1))
	openWith := func(o AWSOptions, env sink.Env) (sink.Sink, error) {
		return NewPrefixList(api, "us-east-1", PrefixListOptions{PrefixList: name, Family: "ipv4", MaxEntries: 50, AWSOptions: o}, spec(name), env)
	}
	open := func(t testing.TB) sink.Sink {
		t.Helper()
		l, err := NewPrefixList(api, "us-east-1", PrefixListOptions{PrefixList: name, Family: "ipv4", MaxEntries: 50}, spec(name), sink.Env{})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	lists := func(t testing.TB) []types.ManagedPrefixList {
		t.Helper()
		out, err := raw.DescribeManagedPrefixLists(ctx, &ec2.DescribeManagedPrefixListsInput{
			Filters: []types.Filter{{Name: aws.String("prefix-list-name"), Values: []string{name}}}})
		if err != nil {
			t.Fatal(err)
		}
		var mine []types.ManagedPrefixList
		for _, pl := range out.PrefixLists {
			if aws.ToString(pl.PrefixListName) == name {
				mine = append(mine, pl)
			}
		}
		return mine
	}
	entries := func(t testing.TB, id string) []types.PrefixListEntry {
		t.Helper()
		out, err := raw.GetManagedPrefixListEntries(ctx, &ec2.GetManagedPrefixListEntriesInput{PrefixListId: aws.String(id)})
		if err != nil {
			t.Fatal(err)
		}
		return out.Entries
	}
	// modify changes the one list by hand, creating it when missing.
	modify := func(t testing.TB, add []types.AddPrefixListEntry, remove []types.RemovePrefixListEntry) {
		t.Helper()
		ls := lists(t)
		if len(ls) == 0 {
			_, err := raw.CreateManagedPrefixList(ctx, &ec2.CreateManagedPrefixListInput{PrefixListName: aws.String(name),
				AddressFamily: aws.String("IPv4"), MaxEntries: aws.Int32(50), Entries: add})
			if err != nil {
				t.Fatal(err)
			}
			return
		}
		in := &ec2.ModifyManagedPrefixListInput{PrefixListId: ls[0].PrefixListId, CurrentVersion: ls[0].Version,
			PrefixListName: aws.String(name), AddEntries: add, RemoveEntries: remove}
		if _, err := raw.ModifyManagedPrefixList(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	add := func(t testing.TB, p netip.Prefix, desc string) {
		modify(t, []types.AddPrefixListEntry{{Cidr: aws.String(p.String()), Description: aws.String(desc)}}, nil)
	}
	return &sinktest.Target{
		Open:    open,
		Hostile: hostileAWS(openWith),
		Writes:  func(testing.TB) int { return api.count() },
		Snapshot: func(t testing.TB) string {
			var b strings.Builder
			for _, pl := range lists(t) {
				fmt.Fprintf(&b, "list %s max %d\n", aws.ToString(pl.AddressFamily), aws.ToInt32(pl.MaxEntries))
				var lines []string
				for _, e := range entries(t, aws.ToString(pl.PrefixListId)) {
					lines = append(lines, fmt.Sprintf("  %s %q", aws.ToString(e.Cidr), aws.ToString(e.Description)))
				}
				slices.Sort(lines)
				b.WriteString(strings.Join(lines, "\n") + "\n")
			}
			return b.String()
		},
		InjectOwned:   func(t testing.TB, e plan.Entry) { add(t, e.Prefix, sink.Marker("", e.Set)) },
		InjectForeign: func(t testing.TB, e plan.Entry) { add(t, e.Prefix, "hand-made entry") },
		Drift: func(t testing.TB) {
			ls := lists(t)
			if len(ls) != 1 {
				t.Fatalf("%d lists named %s", len(ls), name)
			}
			for _, e := range entries(t, aws.ToString(ls[0].PrefixListId)) {
				if _, ours := sink.ParseMarker("", aws.ToString(e.Description)); ours {
					modify(t, nil, []types.RemovePrefixListEntry{{Cidr: e.Cidr}})
					return
				}
			}
			t.Fatal("no entry of ours to remove")
		},
		FailNext: func(testing.TB) { api.arm() },
		Tamper: map[string]func(testing.TB){
			// A second list of the same name: which one is ours cannot be
			// told, so neither is touched.
			"duplicate-name": func(t testing.TB) {
				if _, err := raw.CreateManagedPrefixList(ctx, &ec2.CreateManagedPrefixListInput{PrefixListName: aws.String(name),
					AddressFamily: aws.String("IPv4"), MaxEntries: aws.Int32(10)}); err != nil {
					t.Fatal(err)
				}
			},
		},
	}
}

// hostileAWS puts a hostile string in each free-text setting an EC2 sink
// sends to AWS: the owner id, from the config or the sink, and its tags.
func hostileAWS(open func(AWSOptions, sink.Env) (sink.Sink, error)) map[string]func(testing.TB, string) (sink.Sink, error) {
	return map[string]func(testing.TB, string) (sink.Sink, error){
		"owner_id":        func(_ testing.TB, v string) (sink.Sink, error) { return open(AWSOptions{}, sink.Env{OwnerID: v}) },
		"owner_id option": func(_ testing.TB, v string) (sink.Sink, error) { return open(AWSOptions{OwnerID: v}, sink.Env{}) },
		"tags value": func(_ testing.TB, v string) (sink.Sink, error) {
			return open(AWSOptions{Tags: Tags{"team": v}}, sink.Env{})
		},
		"tags key": func(_ testing.TB, v string) (sink.Sink, error) {
			return open(AWSOptions{Tags: Tags{v: "ops"}}, sink.Env{})
		},
	}
}
