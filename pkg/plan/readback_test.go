package plan

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// What a sink holds under our marker passes the same validation as
// answers: hand-added world-open rules marked as ours are removed under
// every policy, and listed as unsafe.
func TestCalculateRemovesUnsafeOwnedEntries(t *testing.T) {
	legacy := []Entry{entry("legacy", Ingress, "0.0.0.0/1"), entry("legacy", Ingress, "128.0.0.0/1")}
	kept := entry("webhooks", Ingress, "193.0.2.10/32")
	cur := State{Owned: append([]Entry{kept}, legacy...)}
	for name, policy := range Policies {
		p := Input{Sink: "s", Desired: []DesiredSet{set("webhooks", Ingress, "193.0.2.10/32")}, Current: cur, Policy: policy,
			Limits: DefaultLimits, Known: []string{"webhooks", "legacy"}}.Calculate()
		want := SinkPlan{Sink: "s", Remove: legacy, Unsafe: legacy, Keep: []Entry{kept}}
		if diff := cmp.Diff(want, p, cmpPrefix, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}
	// The same holds for a frozen set's entries and with no known list.
	frozen := set("legacy", Ingress)
	frozen.Frozen = true
	p := Calculate("s", []DesiredSet{frozen}, State{Owned: legacy}, nil)
	if diff := cmp.Diff(legacy, p.Unsafe, cmpPrefix); diff != "" || len(p.Remove) != 2 || len(p.Keep) != 0 {
		t.Errorf("frozen set: unsafe (-want +got):\n%s\nremove %v keep %v", diff, p.Remove, p.Keep)
	}
}

// A set no longer defined, or no longer routed to the sink, is retired:
// its owned entries are removed (max-delete counts them). A defined,
// routed set that is merely not selected, or frozen, keeps its entries.
func TestCalculateRetiresUnknownSets(t *testing.T) {
	hooks := entry("webhooks", Ingress, "193.0.2.10/32")
	events := entry("events", Ingress, "193.0.2.20/32")
	old := entry("oldset", Ingress, "193.0.2.30/32")
	frozenE := entry("api", Ingress, "193.0.2.40/32")
	api := set("api", Ingress)
	api.Frozen = true
	cur := State{Owned: []Entry{hooks, events, old, frozenE}}
	p := Input{Sink: "s", Desired: []DesiredSet{set("webhooks", Ingress, "193.0.2.10/32"), api}, Current: cur,
		Known: []string{"webhooks", "events", "api"}}.Calculate()
	want := SinkPlan{Sink: "s", Remove: []Entry{old}, Retired: []Entry{old}, Keep: Sort([]Entry{hooks, events, frozenE})}
	if diff := cmp.Diff(want, p, cmpPrefix, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	// A desired set is known even when the caller's list misses it.
	p = Input{Sink: "s", Desired: []DesiredSet{set("webhooks", Ingress, "193.0.2.10/32")}, Current: State{Owned: []Entry{hooks}},
		Known: []string{}}.Calculate()
	if len(p.Remove) != 0 || len(p.Keep) != 1 {
		t.Errorf("desired set retired: %+v", p)
	}
}

// Prefix lists hold bare CIDRs; they are valid entries, not unsafe ones.
func TestCalculateKeepsBarePrefixListEntries(t *testing.T) {
	bare := Entry{Set: "webhooks", Prefix: netip.MustParsePrefix("193.0.2.10/32")}
	d := DesiredSet{Name: "webhooks", Ports: []uint16{0}, Prefixes: pfx("193.0.2.10/32")}
	p := Input{Sink: "pl", Desired: []DesiredSet{d}, Current: State{Owned: []Entry{bare}}, Known: []string{"webhooks"}}.Calculate()
	if p.HasChanges() || len(p.Keep) != 1 {
		t.Errorf("bare entry not kept: %+v", p)
	}
}

// upsert-only never removes a valid entry, retired or not.
func TestCalculateRetiredHeldByPolicy(t *testing.T) {
	old := entry("oldset", Ingress, "193.0.2.30/32")
	p := Input{Sink: "s", Current: State{Owned: []Entry{old}}, Policy: Policies["upsert-only"], Known: []string{"webhooks"}}.Calculate()
	if len(p.Remove) != 0 || len(p.Retired) != 0 || p.Held != 1 || len(p.Keep) != 1 {
		t.Errorf("upsert-only removed a retired entry: %+v", p)
	}
}
