package plan

import (
	"net/netip"
	"slices"
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
	p := Input{Sink: "s", Desired: []DesiredSet{frozen}, Current: State{Owned: legacy}}.Calculate()
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

// An entry whose set the sink's ownership record no longer names (issue 20
// item 3) counts as held by every set routed to the sink: a set that wants
// it keeps it, a frozen or unselected set keeps it, and only what no set
// wants is removed, as the policy allows; nothing is retired or unsafe.
func TestCalculateUnlabelledHeldByEveryRoutedSet(t *testing.T) {
	unlabel := func(es ...Entry) []Entry {
		out := make([]Entry, len(es))
		for i, e := range es {
			e.Set = ""
			out[i] = e
		}
		return out
	}
	var hooks []Entry
	var addrs []string
	for i := range 20 {
		a := netip.AddrFrom4([4]byte{193, 0, 2, byte(10 + i)})
		addrs = append(addrs, netip.PrefixFrom(a, 32).String())
		hooks = append(hooks, entry("webhooks", Ingress, addrs[i]))
	}
	ev := entry("events", Egress, "44.2.0.1/32")
	cur := State{Unlabelled: unlabel(append([]Entry{ev}, hooks...)...), Drift: []string{"record unreadable"}}
	known := []string{"events", "webhooks"}
	desired := []DesiredSet{set("events", Egress, "44.2.0.1/32"), set("webhooks", Ingress, addrs...)}
	p := Input{Sink: "s", Desired: desired, Current: cur, Known: known}.Calculate()
	want := SinkPlan{Sink: "s", Keep: Sort(append([]Entry{ev}, hooks...)), Drift: cur.Drift}
	if diff := cmp.Diff(want, p, cmpPrefix, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("every address still wanted (-want +got):\n%s", diff)
	}
	if err := (MaxDelete{ByCount: true}).Check(p); err != nil {
		t.Errorf("max-delete 0 refuses a plan that removes nothing: %v", err)
	}

	// webhooks is frozen and events dropped its address: both stay, each
	// under a set that holds it.
	frozen := set("webhooks", Ingress)
	frozen.Frozen, frozen.LastKnown = true, pfx(addrs...)
	p = Input{Sink: "s", Desired: []DesiredSet{set("events", Egress), frozen}, Current: cur, Known: known}.Calculate()
	if len(p.Remove) != 0 || len(p.Add) != 0 || len(p.Keep) != 21 {
		t.Errorf("frozen set: add %v remove %v keep %d; want all 21 kept", p.Add, p.Remove, len(p.Keep))
	}
	// webhooks is routed but not selected this run: it may want them.
	p = Input{Sink: "s", Desired: []DesiredSet{set("events", Egress, "44.2.0.1/32")}, Current: cur, Known: known}.Calculate()
	if len(p.Remove) != 0 || len(p.Keep) != 21 {
		t.Errorf("unselected set: remove %v keep %d; want all 21 kept", p.Remove, len(p.Keep))
	}

	// What no routed set wants goes as a shrink does: removed under sync
	// (max-delete counts it), held under upsert-only; never unsafe or
	// retired.
	stray := entry("", Ingress, "193.0.2.99/32")
	cur = State{Unlabelled: []Entry{stray, unlabel(hooks[0])[0]}}
	for name, policy := range Policies {
		p = Input{Sink: "s", Desired: []DesiredSet{set("webhooks", Ingress, addrs[0])}, Current: cur, Policy: policy,
			Known: []string{"webhooks"}}.Calculate()
		if len(p.Unsafe)+len(p.Retired) != 0 || len(p.Add) != 0 {
			t.Errorf("%s: unsafe %v retired %v add %v", name, p.Unsafe, p.Retired, p.Add)
		}
		gone := entry("webhooks", Ingress, "193.0.2.99/32")
		if removed := slices.Contains(p.Remove, gone); removed != (name == "sync") || !slices.Contains(p.Keep, hooks[0]) {
			t.Errorf("%s: remove %v keep %v", name, p.Remove, p.Keep)
		}
	}
}

// A state's unlabelled entries are part of its fingerprint, so a saved
// plan is stale once a record is broken or mended.
func TestFingerprintUnlabelled(t *testing.T) {
	e := entry("", Ingress, "193.0.2.10/32")
	a, b := State{}, State{Unlabelled: []Entry{e}}
	if a.Fingerprint() == b.Fingerprint() {
		t.Error("unlabelled entries do not change the fingerprint")
	}
	c := State{Owned: []Entry{entry("webhooks", Ingress, "193.0.2.10/32")}}
	if b.Fingerprint() == c.Fingerprint() {
		t.Error("an unlabelled entry fingerprints as a labelled one")
	}
}
