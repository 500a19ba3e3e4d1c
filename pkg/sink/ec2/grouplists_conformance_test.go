package ec2

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/sink/sinktest"
)

// The suite's sets differ in direction, which one series cannot serve
// (every reference allows every address of the lists), so it plays them
// all as ingress sets.
var groupListsHarness = sinktest.Harness{Type: "ec2", Skip: map[sinktest.Case]string{
	sinktest.FileDirectory:    noFiles,
	sinktest.UnreadableRecord: "a list entry's description cannot be rewritten without removing its address for a moment, so an edited label stays, as with ec2-prefix-list"}}

func TestConformanceGroupPrefixListsFake(t *testing.T) {
	h := groupListsHarness
	h.New = func(t testing.TB) *sinktest.Target { return groupListsTarget(t, fakeBackend(t)) }
	sinktest.Run(t, h)
}

func TestConformanceGroupPrefixListsMoto(t *testing.T) {
	url := motoServer(t)
	h := groupListsHarness
	h.New = func(t testing.TB) *sinktest.Target { return groupListsTarget(t, motoBackend(url)) }
	sinktest.Run(t, h)
}

// groupListsTarget is a group with prefix_lists over two lists of 10.
func groupListsTarget(t testing.TB, b backend) *sinktest.Target {
	t.Helper()
	raw, _ := testClient(b.url)
	ctx := context.Background()
	api := &flaky{API: raw}
	id := b.newGroup(t, raw)
	name := fmt.Sprintf("sinktest-sgpl-%d", motoNames.Add(1))
	opts := func(o AWSOptions) GroupOptions {
		return GroupOptions{GroupID: id, RuleLimit: DefaultRuleLimit, PrefixLists: name, MaxEntries: 10, MaxLists: 2, AWSOptions: o}
	}
	openWith := func(o AWSOptions, env sink.Env) (sink.Sink, error) {
		return NewGroup(api, "us-east-1", opts(o), spec(id), env)
	}
	open := func(t testing.TB) sink.Sink {
		t.Helper()
		g, err := openWith(AWSOptions{}, sink.Env{})
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	// series maps the lists of the series by id to their slot names.
	series := func(t testing.TB) map[string]string {
		t.Helper()
		out, err := raw.DescribeManagedPrefixLists(ctx, &ec2.DescribeManagedPrefixListsInput{
			Filters: []types.Filter{{Name: aws.String("prefix-list-name"), Values: []string{name, name + "-2"}}}})
		if err != nil {
			t.Fatal(err)
		}
		ids := map[string]string{}
		for _, pl := range out.PrefixLists {
			if n := aws.ToString(pl.PrefixListName); (n == name || n == name+"-2") && !strings.HasPrefix(string(pl.State), "delete-") {
				ids[aws.ToString(pl.PrefixListId)] = strings.Replace(n, name, "NAME", 1)
			}
		}
		return ids
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
	authorize := func(t testing.TB, perm types.IpPermission, tagged bool) {
		t.Helper()
		var spec []types.TagSpecification
		if tagged {
			spec = []types.TagSpecification{{ResourceType: types.ResourceTypeSecurityGroupRule, Tags: tagList(tags("", nil))}}
		}
		_, err := raw.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{GroupId: aws.String(id), IpPermissions: []types.IpPermission{perm}, TagSpecifications: spec})
		if err != nil && code(err) != "InvalidPermission.Duplicate" {
			t.Fatal(err)
		}
	}
	// first returns the list NAME, created tagged as ours when missing.
	first := func(t testing.TB) types.ManagedPrefixList {
		t.Helper()
		for {
			for lid, n := range series(t) {
				if n == "NAME" {
					out, err := raw.DescribeManagedPrefixLists(ctx, &ec2.DescribeManagedPrefixListsInput{PrefixListIds: []string{lid}})
					if err != nil {
						t.Fatal(err)
					}
					return out.PrefixLists[0]
				}
			}
			if _, err := raw.CreateManagedPrefixList(ctx, &ec2.CreateManagedPrefixListInput{PrefixListName: aws.String(name),
				AddressFamily: aws.String("IPv4"), MaxEntries: aws.Int32(10),
				TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypePrefixList, Tags: tagList(tags("", nil))}}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	modify := func(t testing.TB, pl types.ManagedPrefixList, add []types.AddPrefixListEntry, remove []types.RemovePrefixListEntry) {
		t.Helper()
		if _, err := raw.ModifyManagedPrefixList(ctx, &ec2.ModifyManagedPrefixListInput{PrefixListId: pl.PrefixListId, CurrentVersion: pl.Version,
			PrefixListName: pl.PrefixListName, AddEntries: add, RemoveEntries: remove}); err != nil {
			t.Fatal(err)
		}
	}
	ingress := func(e plan.Entry) plan.Entry { e.Direction = plan.Ingress; return e }
	return &sinktest.Target{
		IngressOnly: true,
		Open:        open,
		Hostile:     hostileAWS(openWith),
		Writes:      func(testing.TB) int { return api.count() },
		Snapshot: func(t testing.TB) string {
			ids := series(t)
			var lines []string
			for _, r := range rules(t) {
				dir := "ingress"
				if aws.ToBool(r.IsEgress) {
					dir = "egress"
				}
				peer := aws.ToString(r.CidrIpv4) + aws.ToString(r.CidrIpv6)
				if pl := aws.ToString(r.PrefixListId); pl != "" {
					peer = "list " + cmp.Or(ids[pl], pl)
				}
				lines = append(lines, fmt.Sprintf("%s %s %d-%d %s %q", dir, aws.ToString(r.IpProtocol), aws.ToInt32(r.FromPort), aws.ToInt32(r.ToPort), peer, aws.ToString(r.Description)))
			}
			for lid, n := range ids {
				out, err := raw.GetManagedPrefixListEntries(ctx, &ec2.GetManagedPrefixListEntriesInput{PrefixListId: aws.String(lid)})
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range out.Entries {
					lines = append(lines, fmt.Sprintf("%s holds %s %q", n, aws.ToString(e.Cidr), aws.ToString(e.Description)))
				}
			}
			slices.Sort(lines)
			return strings.Join(lines, "\n")
		},
		// As the sink writes it: an IPv4 address into the list NAME,
		// referenced on its port; an IPv6 one as a rule of its own.
		InjectOwned: func(t testing.TB, e plan.Entry) {
			e = ingress(e)
			if e.Prefix.Addr().Is6() {
				authorize(t, ipPermission(e, sink.Marker("", e.Set)), true)
				return
			}
			pl := first(t)
			modify(t, pl, []types.AddPrefixListEntry{{Cidr: aws.String(e.Prefix.String()), Description: aws.String(sink.Marker("", e.Set))}}, nil)
			authorize(t, types.IpPermission{IpProtocol: aws.String(e.Protocol.String()), FromPort: aws.Int32(int32(e.Port)), ToPort: aws.Int32(int32(e.Port)),
				PrefixListIds: []types.PrefixListId{{PrefixListId: pl.PrefixListId, Description: aws.String(sink.Marker("", "prefix_lists"))}}}, true)
		},
		InjectForeign: func(t testing.TB, e plan.Entry) { authorize(t, ipPermission(ingress(e), "hand-made rule"), false) },
		// Remove one of our entries from the list by hand.
		Drift: func(t testing.TB) {
			pl := first(t)
			out, err := raw.GetManagedPrefixListEntries(ctx, &ec2.GetManagedPrefixListEntriesInput{PrefixListId: pl.PrefixListId})
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range out.Entries {
				if _, ours := sink.ParseMarker("", aws.ToString(e.Description)); ours {
					modify(t, pl, nil, []types.RemovePrefixListEntry{{Cidr: e.Cidr}})
					return
				}
			}
			t.Fatal("no entry of ours to remove")
		},
		FailNext: func(testing.TB) { api.arm() },
		Tamper: map[string]func(testing.TB){
			"missing-group": func(testing.TB) { id = "sg-00000000deadbeef" },
			// A list of the series that we did not make is never
			// referenced, nor filled.
			"foreign-list-in-series": func(t testing.TB) {
				if _, err := raw.CreateManagedPrefixList(ctx, &ec2.CreateManagedPrefixListInput{PrefixListName: aws.String(name + "-2"),
					AddressFamily: aws.String("IPv4"), MaxEntries: aws.Int32(10)}); err != nil {
					t.Fatal(err)
				}
			},
		},
	}
}
