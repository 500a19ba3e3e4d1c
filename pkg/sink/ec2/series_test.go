package ec2

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/google/go-cmp/cmp"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/ec2fake"
)

// seriesSizes is how many entries each list of a series holds, by name.
func seriesSizes(t *testing.T, f *ec2fake.Fake, names ...string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, n := range names {
		if id, ok := f.ListByName(n); ok {
			l, _ := f.List(id)
			out[n] = len(l.Entries)
			if l.Tags[ManagedTag] != "managed" {
				t.Errorf("%s not tagged as ours: %v", n, l.Tags)
			}
		}
	}
	return out
}

func TestPrefixListSeriesSpreadsThenRetires(t *testing.T) {
	f := ec2fake.New()
	defer f.Close()
	api, _ := testClient(f.URL)
	l, _ := newList(t, api, "pd", func(o *PrefixListOptions) { o.MaxEntries = 3; o.MaxLists = 3 })
	seven := addrs(7, "198.52.100.%d/32")
	mustCycle(t, l, []plan.DesiredSet{set("events", plan.Egress, p443, seven...)})
	if diff := cmp.Diff(map[string]int{"pd": 3, "pd-2": 3, "pd-3": 1}, seriesSizes(t, f, "pd", "pd-2", "pd-3", "pd-4")); diff != "" {
		t.Errorf("sizes (-want +got):\n%s", diff)
	}
	f.ResetCalls()
	if p := mustCycle(t, l, []plan.DesiredSet{set("events", plan.Egress, p443, seven...)}); p.HasChanges() {
		t.Errorf("second run: %+v", p)
	}
	if diff := cmp.Diff(map[string]int{"DescribeManagedPrefixLists": 1, "GetManagedPrefixListEntries": 3}, f.Calls()); diff != "" {
		t.Errorf("second run calls (-want +got):\n%s", diff)
	}
	// A new address fills the room the last list has; nothing moves.
	eight := addrs(8, "198.52.100.%d/32")
	p := mustCycle(t, l, []plan.DesiredSet{set("events", plan.Egress, p443, eight...)})
	if len(p.Add) != 1 || len(p.Remove) != 0 {
		t.Errorf("grow: add %v remove %v", p.Add, p.Remove)
	}
	if diff := cmp.Diff(map[string]int{"pd": 3, "pd-2": 3, "pd-3": 2}, seriesSizes(t, f, "pd", "pd-2", "pd-3")); diff != "" {
		t.Errorf("sizes after growing (-want +got):\n%s", diff)
	}
	// A shrink to what the first list holds empties the others, which
	// nothing references: they are deleted in the same run.
	three := addrs(3, "198.52.100.%d/32")
	mustCycle(t, l, []plan.DesiredSet{set("events", plan.Egress, p443, three...)})
	if diff := cmp.Diff(map[string]int{"pd": 3}, seriesSizes(t, f, "pd", "pd-2", "pd-3")); diff != "" {
		t.Errorf("sizes after the shrink (-want +got):\n%s", diff)
	}
	f.ResetCalls()
	if p := mustCycle(t, l, []plan.DesiredSet{set("events", plan.Egress, p443, three...)}); p.HasChanges() {
		t.Errorf("after the shrink: %+v", p)
	}
}

func TestPrefixListSeriesOverflowRefused(t *testing.T) {
	f := ec2fake.New()
	defer f.Close()
	api, _ := testClient(f.URL)
	l, _ := newList(t, api, "pd", func(o *PrefixListOptions) { o.MaxEntries = 3; o.MaxLists = 3 })
	_, err := cycle(t, l, []plan.DesiredSet{set("events", plan.Egress, p443, addrs(10, "198.52.100.%d/32")...)})
	var ge *plan.GuardError
	if !errors.As(err, &ge) || ge.Guard != plan.GuardEC2MaxEntries ||
		!strings.Contains(err.Error(), "the 3 lists pd… would hold 10 entries (10 ours, 0 others), more than their MaxEntries allow (9 in all); raise max_entries or max_lists") {
		t.Fatalf("err = %v", err)
	}
	if n := len(mutating(f.Calls())); n != 0 {
		t.Errorf("%d writes after a refusal: %v", n, f.Calls())
	}
}

// A list of the series that someone else made (not tagged as ours) is
// filled like the others but never deleted.
func TestPrefixListSeriesKeepsForeignList(t *testing.T) {
	f := ec2fake.New()
	defer f.Close()
	f.AddPrefixList("pd-2", "IPv4", 3)
	api, _ := testClient(f.URL)
	l, _ := newList(t, api, "pd", func(o *PrefixListOptions) { o.MaxEntries = 3; o.MaxLists = 2 })
	mustCycle(t, l, []plan.DesiredSet{set("events", plan.Egress, p443, addrs(5, "198.52.100.%d/32")...)})
	mustCycle(t, l, []plan.DesiredSet{set("events", plan.Egress, p443, addrs(2, "198.52.100.%d/32")...)})
	if _, ok := f.ListByName("pd-2"); !ok {
		t.Error("a list pdsafelist did not create was deleted")
	}
}

func TestPrefixListSeriesOptions(t *testing.T) {
	for _, tc := range []struct {
		o    PrefixListOptions
		want string
	}{
		{PrefixListOptions{PrefixList: "pl-0123456789abcdef0", MaxEntries: 10, MaxLists: 2}, "max_lists 2 needs a list name, not the id pl-0123456789abcdef0"},
		{PrefixListOptions{PrefixList: "pd", MaxEntries: 10, MaxLists: 101}, "max_lists 101: want 1 to 100"},
		{PrefixListOptions{PrefixList: strings.Repeat("a", 254), MaxEntries: 10, MaxLists: 2}, "too long for numbered lists"},
	} {
		_, err := NewPrefixList(nil, "us-east-1", tc.o, spec("x"), sink.Env{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err = %v, want %q", tc.o, err, tc.want)
		}
	}
}

// Against moto: a 2,500-prefix set and a GitHub-actions-sized one (4,000)
// over lists of 1,000, with the API calls of a first and a no-change run;
// then an emptied list that a group still references is kept until the
// group lets go.
func TestPrefixListSeriesMoto(t *testing.T) {
	url := motoServer(t)
	c, _ := testClient(url)
	lists := func() map[string]string {
		out, err := c.DescribeManagedPrefixLists(context.Background(), &ec2.DescribeManagedPrefixListsInput{})
		if err != nil {
			t.Fatal(err)
		}
		ids := map[string]string{}
		for _, pl := range out.PrefixLists {
			if aws.ToString(pl.OwnerId) != "AWS" && !strings.HasPrefix(string(pl.State), "delete-") {
				ids[aws.ToString(pl.PrefixListName)] = aws.ToString(pl.PrefixListId)
			}
		}
		return ids
	}
	big := make([]string, 0, 4000)
	for i := range 4000 {
		big = append(big, fmt.Sprintf("20.%d.%d.0/24", 40+i/250, i%250))
	}
	var l *PrefixList
	var desired []plan.DesiredSet
	for _, size := range []int{2500, 4000} {
		counted := &flaky{API: c}
		name := fmt.Sprintf("actions%d", size)
		l, _ = newList(t, counted, name, func(o *PrefixListOptions) { o.MaxEntries = 1000; o.MaxLists = 5 })
		desired = []plan.DesiredSet{set("actions", plan.Ingress, p443, big[:size]...)}
		mustCycle(t, l, desired)
		writes, calls := counted.count(), counted.total()
		ids := lists()
		for i := range 5 {
			n := listName(name, i)
			want := min(max(size-1000*i, 0), 1000)
			id, ok := ids[n]
			if !ok {
				if want > 0 {
					t.Errorf("%s missing", n)
				}
				continue
			}
			out, err := c.GetManagedPrefixListEntries(context.Background(), &ec2.GetManagedPrefixListEntriesInput{PrefixListId: aws.String(id)})
			if err != nil {
				t.Fatal(err)
			}
			if len(out.Entries) != want {
				t.Errorf("%s holds %d entries, want %d", n, len(out.Entries), want)
			}
		}
		if p := mustCycle(t, l, desired); p.HasChanges() {
			t.Errorf("%d: second run: %d adds, %d removes, drift %v", size, len(p.Add), len(p.Remove), p.Drift)
		}
		t.Logf("%d prefixes: first run %d calls (%d writes); no-change run %d calls (%d writes)",
			size, calls, writes, counted.total()-calls, counted.count()-writes)
		if n := counted.count() - writes; n != 0 {
			t.Errorf("%d: no-change run wrote %d times", size, n)
		}
	}
	ids := lists()
	// A group references the fourth list; the shrink empties it.
	sg := motoGroup(t, c)
	if _, err := c.AuthorizeSecurityGroupIngress(context.Background(), &ec2.AuthorizeSecurityGroupIngressInput{GroupId: aws.String(sg),
		IpPermissions: []types.IpPermission{{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(443), ToPort: aws.Int32(443),
			PrefixListIds: []types.PrefixListId{{PrefixListId: aws.String(ids["actions4000-4"])}}}}}); err != nil {
		t.Fatal(err)
	}
	desired = []plan.DesiredSet{set("actions", plan.Ingress, p443, big[:2500]...)}
	mustCycle(t, l, desired)
	if _, ok := lists()["actions4000-4"]; !ok {
		t.Fatal("an emptied list a group references was deleted")
	}
	if p := mustCycle(t, l, desired); p.HasChanges() {
		t.Errorf("a referenced empty list keeps the plan changing: %v", p.Drift)
	}
	if _, err := c.RevokeSecurityGroupIngress(context.Background(), &ec2.RevokeSecurityGroupIngressInput{GroupId: aws.String(sg),
		IpPermissions: []types.IpPermission{{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(443), ToPort: aws.Int32(443),
			PrefixListIds: []types.PrefixListId{{PrefixListId: aws.String(ids["actions4000-4"])}}}}}); err != nil {
		t.Fatal(err)
	}
	p := mustCycle(t, l, desired)
	if len(p.Drift) != 1 || !strings.Contains(p.Drift[0], "is empty and no security group references it; delete it") {
		t.Errorf("drift %v", p.Drift)
	}
	got := lists()
	if _, ok := got["actions4000-4"]; ok {
		t.Error("an empty unreferenced list of ours was kept")
	}
	if _, ok := got["actions4000-3"]; !ok {
		t.Error("the third list, holding 500 entries, is gone")
	}
}

// A list of ours smaller than max_entries grows, by what the set needs,
// before any new list is made.
func TestPrefixListGrowsMaxEntries(t *testing.T) {
	f := ec2fake.New()
	defer f.Close()
	api, _ := testClient(f.URL)
	small, _ := newList(t, api, "pd", func(o *PrefixListOptions) { o.MaxEntries = 3 })
	mustCycle(t, small, []plan.DesiredSet{set("events", plan.Egress, p443, addrs(3, "198.52.100.%d/32")...)})
	l, _ := newList(t, api, "pd", func(o *PrefixListOptions) { o.MaxEntries = 6; o.MaxLists = 2 })
	desired := []plan.DesiredSet{set("events", plan.Egress, p443, addrs(5, "198.52.100.%d/32")...)}
	mustCycle(t, l, desired)
	id, _ := f.ListByName("pd")
	got, _ := f.List(id)
	if got.MaxEntries != 5 || len(got.Entries) != 5 {
		t.Errorf("list holds %d entries of MaxEntries %d, want 5 of 5", len(got.Entries), got.MaxEntries)
	}
	if _, ok := f.ListByName("pd-2"); ok {
		t.Error("a second list was made while the first could grow")
	}
	if p := mustCycle(t, l, desired); p.HasChanges() {
		t.Errorf("second run: %+v", p)
	}
}

// A list grows only while every group referencing it stays within its
// rule quota (update-aws-ip-ranges' pre-check): a group at its quota
// refuses the growth, naming the group and its counts, and nothing is
// written.
func TestPrefixListGrowthRefusedByReferencingGroup(t *testing.T) {
	url := motoServer(t)
	c, _ := testClient(url)
	ctx := context.Background()
	small, _ := newList(t, c, "pd", func(o *PrefixListOptions) { o.MaxEntries = 10 })
	mustCycle(t, small, []plan.DesiredSet{set("events", plan.Ingress, p443, addrs(10, "20.1.1.%d/32")...)})
	out, err := c.DescribeManagedPrefixLists(ctx, &ec2.DescribeManagedPrefixListsInput{
		Filters: []types.Filter{{Name: aws.String("prefix-list-name"), Values: []string{"pd"}}}})
	if err != nil || len(out.PrefixLists) != 1 {
		t.Fatalf("%v %v", out, err)
	}
	id := aws.ToString(out.PrefixLists[0].PrefixListId)
	sg := motoGroup(t, c)
	var ranges []types.IpRange
	for _, a := range addrs(50, "20.2.2.%d/32") {
		ranges = append(ranges, types.IpRange{CidrIp: aws.String(a)})
	}
	if _, err := c.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{GroupId: aws.String(sg),
		IpPermissions: []types.IpPermission{
			{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(22), ToPort: aws.Int32(22), IpRanges: ranges},
			{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(443), ToPort: aws.Int32(443), PrefixListIds: []types.PrefixListId{{PrefixListId: aws.String(id)}}},
		}}); err != nil {
		t.Fatal(err)
	}
	counted := &flaky{API: c}
	l, _ := newList(t, counted, "pd", func(o *PrefixListOptions) { o.MaxEntries = 20 })
	_, err = cycle(t, l, []plan.DesiredSet{set("events", plan.Ingress, p443, addrs(15, "20.1.1.%d/32")...)})
	var ge *plan.GuardError
	want := fmt.Sprintf("growing MaxEntries is refused: security group %s has 60 inbound IPv4 rules of rule_limit 60 (a reference to %s counts as its MaxEntries 10)", sg, id)
	if !errors.As(err, &ge) || ge.Guard != plan.GuardEC2MaxEntries || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v\nwant %q", err, want)
	}
	if n := counted.count(); n != 0 {
		t.Errorf("%d writes after a refusal", n)
	}
	// With room in the group's quota, the same plan is accepted.
	l, _ = newList(t, c, "pd", func(o *PrefixListOptions) { o.MaxEntries = 20; o.RuleLimit = 70 })
	if _, err := cycle(t, l, []plan.DesiredSet{set("events", plan.Ingress, p443, addrs(15, "20.1.1.%d/32")...)}); err != nil {
		t.Errorf("with rule_limit 70: %v", err)
	}
}

// A rule referencing a prefix list counts as the list's MaxEntries rules
// against the group's quota, as EC2 counts it: a group that references a
// list of 50 has room for 10 of our IPv4 rules, not 59.
func TestGroupCountsPrefixListReferenceAsMaxEntries(t *testing.T) {
	url := motoServer(t)
	c, _ := testClient(url)
	ctx := context.Background()
	pl, err := c.CreateManagedPrefixList(ctx, &ec2.CreateManagedPrefixListInput{PrefixListName: aws.String("office"),
		AddressFamily: aws.String("IPv4"), MaxEntries: aws.Int32(50)})
	if err != nil {
		t.Fatal(err)
	}
	sg := motoGroup(t, c)
	if _, err := c.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{GroupId: aws.String(sg),
		IpPermissions: []types.IpPermission{{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(22), ToPort: aws.Int32(22),
			PrefixListIds: []types.PrefixListId{{PrefixListId: pl.PrefixList.PrefixListId}}}}}); err != nil {
		t.Fatal(err)
	}
	g := newGroup(t, c, sg, nil)
	mustCycle(t, g, []plan.DesiredSet{set("events", plan.Ingress, p443, addrs(10, "20.1.1.%d/32")...)})
	_, err = cycle(t, g, []plan.DesiredSet{set("events", plan.Ingress, p443, addrs(11, "20.1.1.%d/32")...)})
	var ge *plan.GuardError
	if !errors.As(err, &ge) || ge.Guard != plan.GuardEC2RuleLimit || !strings.Contains(err.Error(), "61 ingress IPv4 rules (11 ours, 50 others)") {
		t.Fatalf("err = %v", err)
	}
}
