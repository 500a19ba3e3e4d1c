package ec2

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pdsafelist/pdsafelist/pkg/clock"
	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/ec2fake"
)

func TestPrefixListCreatedByNameThenQuiet(t *testing.T) {
	f := ec2fake.New()
	defer f.Close()
	// An AWS-managed list with the same name must not be mistaken for ours.
	api, _ := testClient(f.URL)
	l, _ := newList(t, api, "pagerduty", func(o *PrefixListOptions) { o.MaxEntries = 20 })
	desired := []plan.DesiredSet{
		set("events", plan.Egress, p443, "198.52.100.1/32", "198.52.100.7/32"),
		set("webhooks", plan.Ingress, []uint16{443, 8443}, "193.0.2.0/24", "198.52.100.7/32", "2001:db9::/64"),
	}
	p := mustCycle(t, l, desired)
	if len(p.Drift) != 1 || !strings.Contains(p.Drift[0], "does not exist") {
		t.Errorf("drift %v", p.Drift)
	}
	id, ok := f.ListByName("pagerduty")
	if !ok {
		t.Fatal("list not created")
	}
	got, _ := f.List(id)
	want := []ec2fake.Entry{
		{CIDR: "193.0.2.0/24", Description: "pdsafelist:webhooks"},
		{CIDR: "198.52.100.1/32", Description: "pdsafelist:events"},
		{CIDR: "198.52.100.7/32", Description: "pdsafelist:events"},
	}
	if diff := cmp.Diff(want, got.Entries); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}
	if got.MaxEntries != 20 || got.Family != "IPv4" || got.Tags["pdsafelist"] != "managed" {
		t.Errorf("list %+v", got)
	}
	f.ResetCalls()
	if p := mustCycle(t, l, desired); p.HasChanges() {
		t.Errorf("second run: %+v", p)
	}
	if diff := cmp.Diff(map[string]int{"DescribeManagedPrefixLists": 1, "GetManagedPrefixListEntries": 1}, f.Calls()); diff != "" {
		t.Errorf("second run calls (-want +got):\n%s", diff)
	}
}

func TestPrefixListRemovesOnlyOurs(t *testing.T) {
	f := ec2fake.New()
	defer f.Close()
	id := f.AddPrefixList("pd", "IPv6", 10,
		ec2fake.Entry{CIDR: "2001:db9:ffff::/48", Description: "office"},
		ec2fake.Entry{CIDR: "2001:db9:1::/48", Description: "pdsafelist:other:app"},
		ec2fake.Entry{CIDR: "2001:db9:2::1/128", Description: "pdsafelist:app"},
		ec2fake.Entry{CIDR: "2001:db9:2::2/128", Description: "pdsafelist:app"})
	api, _ := testClient(f.URL)
	l, _ := newList(t, api, id, nil)
	desired := []plan.DesiredSet{set("app", plan.Egress, p443, "198.52.100.1/32", "2001:db9:2::1/128", "2001:db9:ffff::/48", "2001:db9:3::/48")}
	p := mustCycle(t, l, desired)
	if len(p.Covered) != 1 || len(p.Add) != 1 || len(p.Remove) != 1 {
		t.Errorf("plan: add %v remove %v covered %v", p.Add, p.Remove, p.Covered)
	}
	got, _ := f.List(id)
	want := []ec2fake.Entry{
		{CIDR: "2001:db9:1::/48", Description: "pdsafelist:other:app"},
		{CIDR: "2001:db9:2::1/128", Description: "pdsafelist:app"},
		{CIDR: "2001:db9:3::/48", Description: "pdsafelist:app"},
		{CIDR: "2001:db9:ffff::/48", Description: "office"},
	}
	if diff := cmp.Diff(want, got.Entries); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}
	if got.Version != 2 {
		t.Errorf("version %d, want one modification", got.Version)
	}
}

func TestPrefixListBatchesOf100(t *testing.T) {
	f := ec2fake.New()
	defer f.Close()
	id := f.AddPrefixList("pd", "IPv4", 1000)
	api, _ := testClient(f.URL)
	l, _ := newList(t, api, id, nil)
	desired := []plan.DesiredSet{set("events", plan.Egress, p443, addrs(250, "54.51.%d.1/32")...)}
	mustCycle(t, l, desired)
	if got := f.Calls()["ModifyManagedPrefixList"]; got != 3 {
		t.Errorf("%d modify calls, want 3", got)
	}
	// Replace 150 entries: two calls, each adding and removing at once.
	f.ResetCalls()
	desired = []plan.DesiredSet{set("events", plan.Egress, p443, append(addrs(100, "54.51.%d.1/32"), addrs(150, "54.203.%d.1/32")...)...)}
	mustCycle(t, l, desired)
	if got := f.Calls()["ModifyManagedPrefixList"]; got != 2 {
		t.Errorf("%d modify calls, want 2", got)
	}
	got, _ := f.List(id)
	if len(got.Entries) != 250 || got.Version != 6 {
		t.Errorf("%d entries at version %d", len(got.Entries), got.Version)
	}
	if p := mustCycle(t, l, desired); p.HasChanges() {
		t.Errorf("not converged: %d add %d remove", len(p.Add), len(p.Remove))
	}
}

func TestPrefixListVersionMismatchRetried(t *testing.T) {
	f := ec2fake.New()
	defer f.Close()
	id := f.AddPrefixList("pd", "IPv4", 10)
	api, _ := testClient(f.URL)
	l, slept := newList(t, api, id, nil)
	f.Inject(ec2fake.Fault{Action: "ModifyManagedPrefixList", Before: func(f *ec2fake.Fake) { f.BumpVersion(id) }})
	mustCycle(t, l, []plan.DesiredSet{set("events", plan.Egress, p443, "198.52.100.1/32")})
	got, _ := f.List(id)
	if len(got.Entries) != 1 {
		t.Errorf("entries %v", got.Entries)
	}
	calls := f.Calls()
	if calls["ModifyManagedPrefixList"] != 2 || calls["GetManagedPrefixListEntries"] != 2 {
		t.Errorf("calls %v: want a failed modify, a re-read and a retry", calls)
	}
	if len(*slept) != 1 {
		t.Errorf("slept %v, want one backoff", *slept)
	}
}

func TestPrefixListWaitsForModifyComplete(t *testing.T) {
	f := ec2fake.New()
	defer f.Close()
	f.ModifyPolls = 3
	id := f.AddPrefixList("pd", "IPv4", 300)
	api, _ := testClient(f.URL)
	l, slept := newList(t, api, id, nil)
	// A change by someone else is still in progress when we read.
	f.SetState(id, "modify-in-progress", 2)
	mustCycle(t, l, []plan.DesiredSet{set("events", plan.Egress, p443, addrs(150, "54.51.%d.1/32")...)})
	got, _ := f.List(id)
	if len(got.Entries) != 150 || got.State != "modify-complete" {
		t.Fatalf("%d entries, state %s", len(got.Entries), got.State)
	}
	// Reading: the lookup sees the first in-progress poll, one wait sees
	// the second. Then 3 polls with backoff after each of 2 modifications.
	want := []time.Duration{250 * time.Millisecond,
		250 * time.Millisecond, 500 * time.Millisecond, time.Second,
		250 * time.Millisecond, 500 * time.Millisecond, time.Second}
	if diff := cmp.Diff(want, *slept); diff != "" {
		t.Errorf("backoff (-want +got):\n%s", diff)
	}
}

func TestPrefixListIncorrectStateRetried(t *testing.T) {
	f := ec2fake.New()
	defer f.Close()
	id := f.AddPrefixList("pd", "IPv4", 10)
	api, _ := testClient(f.URL)
	l, _ := newList(t, api, id, nil)
	f.Inject(ec2fake.Fault{Action: "ModifyManagedPrefixList", Before: func(f *ec2fake.Fake) { f.SetState(id, "modify-in-progress", 1) }})
	mustCycle(t, l, []plan.DesiredSet{set("events", plan.Egress, p443, "198.52.100.1/32")})
	if got, _ := f.List(id); len(got.Entries) != 1 {
		t.Errorf("entries %v", got.Entries)
	}
	if got := f.Calls()["ModifyManagedPrefixList"]; got != 2 {
		t.Errorf("%d modify calls", got)
	}
}

func TestPrefixListWaitDeadline(t *testing.T) {
	f := ec2fake.New()
	defer f.Close()
	id := f.AddPrefixList("pd", "IPv4", 10)
	f.SetState(id, "modify-in-progress", 1000)
	api, _ := testClient(f.URL)
	l, _ := newList(t, api, id, func(o *PrefixListOptions) { o.Timeout = 250 * time.Millisecond })
	l.sleep = clock.Sleep
	l.firstPoll = 10 * time.Millisecond
	_, err := l.Current(context.Background())
	if err == nil || !strings.Contains(err.Error(), "waiting for prefix list "+id+" to leave modify-in-progress") {
		t.Errorf("err = %v", err)
	}
}

func TestPrefixListMaxEntriesRefused(t *testing.T) {
	f := ec2fake.New()
	defer f.Close()
	id := f.AddPrefixList("pd", "IPv4", 3, ec2fake.Entry{CIDR: "203.1.113.0/24", Description: "office"})
	api, _ := testClient(f.URL)
	l, _ := newList(t, api, id, nil)
	_, err := cycle(t, l, []plan.DesiredSet{set("events", plan.Egress, p443, "198.52.100.1/32", "198.52.100.3/32", "198.52.100.5/32")})
	var ge *plan.GuardError
	if !errors.As(err, &ge) || ge.Guard != plan.GuardEC2MaxEntries || !strings.Contains(err.Error(), "4 entries (3 ours, 1 others), more than its MaxEntries 3") {
		t.Fatalf("err = %v", err)
	}
	if n := len(mutating(f.Calls())); n != 0 {
		t.Errorf("refused plan changed the list: %v", f.Calls())
	}
}

func TestPrefixListShapeSharesAndFamily(t *testing.T) {
	f := ec2fake.New()
	defer f.Close()
	id := f.AddPrefixList("pd", "IPv4", 10)
	api, _ := testClient(f.URL)
	l, _ := newList(t, api, id, nil)
	desired := []plan.DesiredSet{
		set("events", plan.Egress, p443, "198.52.100.1/32", "2001:db9::1/128"),
		set("api", plan.Egress, p443, "198.52.100.1/32"),
	}
	mustCycle(t, l, desired)
	got, _ := f.List(id)
	if diff := cmp.Diff([]ec2fake.Entry{{CIDR: "198.52.100.1/32", Description: "pdsafelist:api"}}, got.Entries); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}
	// api drops it but events still wants it: the entry stays as it is.
	desired[1] = set("api", plan.Egress, p443, "198.52.100.9/32")
	mustCycle(t, l, desired)
	if p := mustCycle(t, l, desired); p.HasChanges() {
		t.Errorf("not stable: %+v", p)
	}
	got, _ = f.List(id)
	if len(got.Entries) != 2 {
		t.Errorf("entries %v", got.Entries)
	}
}

func TestPrefixListOptionsValidated(t *testing.T) {
	for _, tc := range []struct {
		o    PrefixListOptions
		want string
	}{
		{PrefixListOptions{PrefixList: "pl-zz", MaxEntries: 10}, "want a pl- id or a list name"},
		{PrefixListOptions{PrefixList: "com.amazonaws.us-east-1.s3", MaxEntries: 10}, "AWS-managed"},
		{PrefixListOptions{PrefixList: "pd", MaxEntries: 10, Family: "ipv5"}, "want ipv4 or ipv6"},
		{PrefixListOptions{PrefixList: "pd", MaxEntries: 1001}, "max_entries 1001"},
		{PrefixListOptions{PrefixList: "pd<>", MaxEntries: 10}, "want a pl- id or a list name"},
	} {
		_, err := NewPrefixList(nil, "us-east-1", tc.o, spec("x"), sinkEnv())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err = %v, want %q", tc.o, err, tc.want)
		}
	}
}

// Issue 20 item 3: descriptions of ours edited by hand read back
// unlabelled, not foreign: what a set wants stays without a write, what
// no set wants is removed as any shrink, and a foreign entry is untouched.
func TestPrefixListEditedDescriptionRemovesNothing(t *testing.T) {
	f := ec2fake.New()
	defer f.Close()
	id := f.AddPrefixList("pd", "IPv4", 10,
		ec2fake.Entry{CIDR: "193.0.2.10/32", Description: "pdsafelist:Webhooks (edited)"},
		ec2fake.Entry{CIDR: "193.0.2.11/32", Description: "pdsafelist:Webhooks (edited)"},
		ec2fake.Entry{CIDR: "193.0.2.12/32", Description: "office"})
	api, _ := testClient(f.URL)
	l, _ := newList(t, api, id, nil)
	p := mustCycle(t, l, []plan.DesiredSet{set("webhooks", plan.Ingress, p443, "193.0.2.10/32", "193.0.2.11/32")})
	if p.HasChanges() || len(p.Keep) != 2 {
		t.Errorf("every address still wanted: add %v remove %v drift %v keep %v", p.Add, p.Remove, p.Drift, p.Keep)
	}
	p = mustCycle(t, l, []plan.DesiredSet{set("webhooks", plan.Ingress, p443, "193.0.2.10/32")})
	if len(p.Add) != 0 || len(p.Remove) != 1 || p.Remove[0].Prefix.String() != "193.0.2.11/32" {
		t.Errorf("shrink: add %v remove %v", p.Add, p.Remove)
	}
	got, _ := f.List(id)
	want := []ec2fake.Entry{
		{CIDR: "193.0.2.10/32", Description: "pdsafelist:Webhooks (edited)"},
		{CIDR: "193.0.2.12/32", Description: "office"},
	}
	if diff := cmp.Diff(want, got.Entries); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}
}
