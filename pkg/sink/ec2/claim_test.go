package ec2

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/ec2fake"
)

// These tests hold the sinks to the claim contract (pkg/plan.Claim): a key
// any set wants, frozen or not, is never removed, and a rule moves to the
// set that still wants it by a description rewrite, not revoke and re-add.

func frozen(name string, dir plan.Direction, ports []uint16, lastKnown ...string) plan.DesiredSet {
	return plan.DesiredSet{Name: name, Direction: dir, Protocol: plan.TCP, Ports: ports, Frozen: true,
		Reason: "api.pagerduty.com: SERVFAIL", LastKnown: prefixes(lastKnown...)}
}

const shared, other = "198.52.100.7/32", "198.52.100.1/32"

// The reproduction: A is held under events, the api list also has
// A; A leaves events in the same run that the api list fails. api's
// LastKnown vouches for A, so A stays, under its current label.
func TestGroupFrozenSetVouchesForAddress(t *testing.T) {
	f := ec2fake.New()
	defer f.Close()
	sg := f.AddGroup()
	api, _ := testClient(f.URL)
	g := newGroup(t, api, sg, nil)
	mustCycle(t, g, []plan.DesiredSet{set("events", plan.Egress, p443, shared, other)})
	both := []plan.DesiredSet{set("api", plan.Egress, p443, shared), set("events", plan.Egress, p443, shared, other)}
	if p := mustCycle(t, g, both); p.HasChanges() {
		t.Fatalf("api joining a held address changes: %+v", p)
	}
	f.ResetCalls()
	froze := []plan.DesiredSet{frozen("api", plan.Egress, p443, shared), set("events", plan.Egress, p443, other)}
	for run := 1; run <= 2; run++ {
		p := mustCycle(t, g, froze)
		if p.HasChanges() {
			t.Errorf("run %d with api frozen: add %v remove %v", run, p.Add, p.Remove)
		}
	}
	want := []ec2fake.Rule{
		rule(sg, true, other, 443, "pdsafelist:events"),
		rule(sg, true, shared, 443, "pdsafelist:events"),
	}
	if diff := cmp.Diff(want, f.Rules(sg), ignoreTags); diff != "" {
		t.Errorf("rules while api is frozen (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int{}, mutating(f.Calls())); diff != "" {
		t.Errorf("mutating calls while api is frozen (-want +got):\n%s", diff)
	}
	// api answers again and still wants A: the rule is handed over in
	// place, one ModifySecurityGroupRules call.
	f.ResetCalls()
	back := []plan.DesiredSet{set("api", plan.Egress, p443, shared), set("events", plan.Egress, p443, other)}
	mustCycle(t, g, back)
	want[1].Description = "pdsafelist:api"
	if diff := cmp.Diff(want, f.Rules(sg), ignoreTags); diff != "" {
		t.Errorf("rules after api is back (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int{"ModifySecurityGroupRules": 1}, mutating(f.Calls())); diff != "" {
		t.Errorf("mutating calls after api is back (-want +got):\n%s", diff)
	}
	if p := mustCycle(t, g, back); p.HasChanges() {
		t.Errorf("not stable after the handover: %+v", p)
	}
}

// The labelling set drops an address other active sets still want: one
// ModifySecurityGroupRules call relabels it (README), and afterwards the
// new holder's freeze keeps it even with no LastKnown, because the rule
// carries the frozen set's own label.
func TestGroupRelabelWhenHolderDrops(t *testing.T) {
	f := ec2fake.New()
	defer f.Close()
	sg := f.AddGroup()
	api, _ := testClient(f.URL)
	g := newGroup(t, api, sg, nil)
	v6 := "2001:db9::7/128"
	mustCycle(t, g, []plan.DesiredSet{set("events", plan.Egress, p443, shared, other, v6)})
	f.ResetCalls()
	dropped := []plan.DesiredSet{
		set("api", plan.Egress, p443, shared, v6),
		set("app", plan.Egress, p443, shared),
		set("events", plan.Egress, p443, other),
	}
	mustCycle(t, g, dropped)
	want := []ec2fake.Rule{
		rule(sg, true, other, 443, "pdsafelist:events"),
		rule(sg, true, shared, 443, "pdsafelist:api"),
		rule(sg, true, v6, 443, "pdsafelist:api"),
	}
	if diff := cmp.Diff(want, f.Rules(sg), ignoreTags); diff != "" {
		t.Errorf("rules (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int{"ModifySecurityGroupRules": 1}, mutating(f.Calls())); diff != "" {
		t.Errorf("mutating calls (-want +got):\n%s", diff)
	}
	if p := mustCycle(t, g, dropped); p.HasChanges() {
		t.Errorf("not stable after the relabel: %+v", p)
	}
	// api freezes with nothing remembered; app still wants A, then drops
	// it too. api's own rules stay, untouched.
	f.ResetCalls()
	for _, appWants := range [][]string{{shared}, {"198.52.100.9/32"}} {
		desired := []plan.DesiredSet{
			frozen("api", plan.Egress, p443),
			set("app", plan.Egress, p443, appWants...),
			set("events", plan.Egress, p443, other),
		}
		p := mustCycle(t, g, desired)
		for _, e := range p.Remove {
			t.Errorf("app wants %v: removes %v", appWants, e)
		}
	}
	want = append(want[:2:2], rule(sg, true, "198.52.100.9/32", 443, "pdsafelist:app"), want[2])
	if diff := cmp.Diff(want, f.Rules(sg), ignoreTags); diff != "" {
		t.Errorf("rules with api frozen (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int{"AuthorizeSecurityGroupEgress": 1}, mutating(f.Calls())); diff != "" {
		t.Errorf("mutating calls with api frozen (-want +got):\n%s", diff)
	}
}

// A prefix list cannot relabel without a gap (see PrefixList.Shape), so an
// entry stays under its label while any set wants it, and a frozen set's
// LastKnown keeps it when its label's set has dropped it.
func TestPrefixListFrozenSetVouchesForAddress(t *testing.T) {
	f := ec2fake.New()
	defer f.Close()
	id := f.AddPrefixList("pd", "IPv4", 10,
		ec2fake.Entry{CIDR: shared, Description: "pdsafelist:events"},
		ec2fake.Entry{CIDR: other, Description: "pdsafelist:events"})
	api, _ := testClient(f.URL)
	l, _ := newList(t, api, id, nil)
	both := []plan.DesiredSet{set("api", plan.Egress, p443, shared), set("events", plan.Egress, p443, shared, other)}
	if p := mustCycle(t, l, both); p.HasChanges() {
		t.Fatalf("api joining a held address changes: %+v", p)
	}
	f.ResetCalls()
	froze := []plan.DesiredSet{frozen("api", plan.Egress, p443, shared, "2001:db9::7/128"), set("events", plan.Egress, p443, other)}
	for run := 1; run <= 2; run++ {
		if p := mustCycle(t, l, froze); p.HasChanges() {
			t.Errorf("run %d with api frozen: add %v remove %v", run, p.Add, p.Remove)
		}
	}
	// api back, still wanting A: nothing to do, A keeps its label.
	if p := mustCycle(t, l, []plan.DesiredSet{set("api", plan.Egress, p443, shared), set("events", plan.Egress, p443, other)}); p.HasChanges() {
		t.Errorf("api back: add %v remove %v", p.Add, p.Remove)
	}
	got, _ := f.List(id)
	want := []ec2fake.Entry{{CIDR: other, Description: "pdsafelist:events"}, {CIDR: shared, Description: "pdsafelist:events"}}
	if diff := cmp.Diff(want, got.Entries); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int{}, mutating(f.Calls())); diff != "" {
		t.Errorf("mutating calls (-want +got):\n%s", diff)
	}
	// Nobody wants A any more: now it goes.
	mustCycle(t, l, []plan.DesiredSet{set("api", plan.Egress, p443, "198.52.100.9/32"), set("events", plan.Egress, p443, other)})
	got, _ = f.List(id)
	want = []ec2fake.Entry{{CIDR: other, Description: "pdsafelist:events"}, {CIDR: "198.52.100.9/32", Description: "pdsafelist:api"}}
	if diff := cmp.Diff(want, got.Entries); diff != "" {
		t.Errorf("entries after A is dropped (-want +got):\n%s", diff)
	}
}

// A plan that hands a CIDR from one label to another (which Shape never
// makes for a list, but a saved or hand-made plan might) must not remove
// it: the list keeps the entry under its old label.
func TestPrefixListApplyNeverRemovesAWantedCIDR(t *testing.T) {
	f := ec2fake.New()
	defer f.Close()
	id := f.AddPrefixList("pd", "IPv4", 10, ec2fake.Entry{CIDR: shared, Description: "pdsafelist:events"})
	api, _ := testClient(f.URL)
	l, _ := newList(t, api, id, nil)
	if _, err := l.Current(context.Background()); err != nil {
		t.Fatal(err)
	}
	a := prefixes(shared)[0]
	p := plan.SinkPlan{Sink: l.Name(), Add: []plan.Entry{{Set: "api", Prefix: a}}, Remove: []plan.Entry{{Set: "events", Prefix: a}}}
	f.ResetCalls()
	if err := l.Apply(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	got, _ := f.List(id)
	if diff := cmp.Diff([]ec2fake.Entry{{CIDR: shared, Description: "pdsafelist:events"}}, got.Entries); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int{}, mutating(f.Calls())); diff != "" {
		t.Errorf("mutating calls (-want +got):\n%s", diff)
	}
}
