package plan

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func pfx(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

func set(name string, dir Direction, prefixes ...string) DesiredSet {
	return DesiredSet{Name: name, Direction: dir, Protocol: TCP, Ports: []uint16{443}, Prefixes: pfx(prefixes...)}
}

func entry(setName string, dir Direction, prefix string) Entry {
	return Entry{Set: setName, Prefix: netip.MustParsePrefix(prefix), Direction: dir, Protocol: TCP, Port: 443}
}

var cmpPrefix = cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })

func TestCalculate(t *testing.T) {
	webhooks := set("webhooks", Ingress, "193.0.2.10/32", "2001:db9::1/128")
	tests := []struct {
		name    string
		desired []DesiredSet
		current State
		policy  Policy
		want    SinkPlan
	}{
		{
			name:    "empty sink gets everything",
			desired: []DesiredSet{webhooks},
			want: SinkPlan{Sink: "s", Add: []Entry{
				entry("webhooks", Ingress, "193.0.2.10/32"),
				entry("webhooks", Ingress, "2001:db9::1/128"),
			}},
		},
		{
			name:    "in sync keeps and changes nothing",
			desired: []DesiredSet{webhooks},
			current: State{Owned: []Entry{entry("webhooks", Ingress, "2001:db9::1/128"), entry("webhooks", Ingress, "193.0.2.10/32")}},
			want: SinkPlan{Sink: "s", Keep: []Entry{
				entry("webhooks", Ingress, "193.0.2.10/32"),
				entry("webhooks", Ingress, "2001:db9::1/128"),
			}},
		},
		{
			name:    "retired owned entry is removed",
			desired: []DesiredSet{webhooks},
			current: State{Owned: []Entry{
				entry("webhooks", Ingress, "193.0.2.10/32"),
				entry("webhooks", Ingress, "2001:db9::1/128"),
				entry("webhooks", Ingress, "198.52.100.7/32"),
			}},
			want: SinkPlan{Sink: "s",
				Remove: []Entry{entry("webhooks", Ingress, "198.52.100.7/32")},
				Keep:   []Entry{entry("webhooks", Ingress, "193.0.2.10/32"), entry("webhooks", Ingress, "2001:db9::1/128")},
			},
		},
		{
			name:    "frozen set is left exactly as held",
			desired: []DesiredSet{{Name: "webhooks", Direction: Ingress, Protocol: TCP, Ports: []uint16{443}, Frozen: true}},
			current: State{Owned: []Entry{entry("webhooks", Ingress, "198.52.100.7/32")}},
			want:    SinkPlan{Sink: "s", Keep: []Entry{entry("webhooks", Ingress, "198.52.100.7/32")}},
		},
		{
			name:    "sets not managed this run are kept",
			desired: []DesiredSet{webhooks},
			current: State{Owned: []Entry{entry("api", Egress, "203.1.113.5/32"), entry("webhooks", Ingress, "193.0.2.10/32")}},
			want: SinkPlan{Sink: "s",
				Add:  []Entry{entry("webhooks", Ingress, "2001:db9::1/128")},
				Keep: []Entry{entry("api", Egress, "203.1.113.5/32"), entry("webhooks", Ingress, "193.0.2.10/32")},
			},
		},
		{
			name:    "identical unmanaged rule covers the need whatever its set",
			desired: []DesiredSet{webhooks},
			current: State{Foreign: []Entry{{Prefix: netip.MustParsePrefix("193.0.2.10/32"), Direction: Ingress, Protocol: TCP, Port: 443}}},
			want: SinkPlan{Sink: "s",
				Add:     []Entry{entry("webhooks", Ingress, "2001:db9::1/128")},
				Covered: []Entry{entry("webhooks", Ingress, "193.0.2.10/32")},
			},
		},
		{
			name:    "unmanaged rule on another port covers nothing",
			desired: []DesiredSet{set("webhooks", Ingress, "193.0.2.10/32")},
			current: State{Foreign: []Entry{{Prefix: netip.MustParsePrefix("193.0.2.10/32"), Direction: Ingress, Protocol: TCP, Port: 8443}}},
			want:    SinkPlan{Sink: "s", Add: []Entry{entry("webhooks", Ingress, "193.0.2.10/32")}},
		},
		{
			name:    "upsert-only holds removals",
			desired: []DesiredSet{set("webhooks", Ingress, "193.0.2.10/32")},
			current: State{Owned: []Entry{entry("webhooks", Ingress, "198.52.100.7/32")}},
			policy:  Policies["upsert-only"],
			want: SinkPlan{Sink: "s",
				Add:  []Entry{entry("webhooks", Ingress, "193.0.2.10/32")},
				Keep: []Entry{entry("webhooks", Ingress, "198.52.100.7/32")},
				Held: 1,
			},
		},
		{
			name:    "create-only leaves a set the sink already holds",
			desired: []DesiredSet{set("webhooks", Ingress, "193.0.2.10/32"), set("api", Egress, "203.1.113.5/32")},
			current: State{Owned: []Entry{entry("webhooks", Ingress, "198.52.100.7/32")}},
			policy:  Policies["create-only"],
			want: SinkPlan{Sink: "s",
				Add:  []Entry{entry("api", Egress, "203.1.113.5/32")},
				Keep: []Entry{entry("webhooks", Ingress, "198.52.100.7/32")},
				Held: 1,
			},
		},
		{
			name:    "drift alone is a change",
			desired: []DesiredSet{set("webhooks", Ingress, "193.0.2.10/32")},
			current: State{Owned: []Entry{entry("webhooks", Ingress, "193.0.2.10/32")}, Drift: []string{"jump rule missing"}},
			want:    SinkPlan{Sink: "s", Keep: []Entry{entry("webhooks", Ingress, "193.0.2.10/32")}, Drift: []string{"jump rule missing"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Input{Sink: "s", Desired: tt.desired, Current: tt.current, Policy: tt.policy}.Calculate()
			if diff := cmp.Diff(tt.want, got, cmpPrefix, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("plan mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// Applying a plan and planning again must show nothing: re-runs are safe.
func TestCalculateConverges(t *testing.T) {
	desired := []DesiredSet{
		set("webhooks", Ingress, "193.0.2.10/32", "193.0.2.11/32", "2001:db9::/48"),
		set("api", Egress, "203.1.113.0/25", "203.1.113.128/25"),
	}
	current := State{Owned: []Entry{entry("api", Egress, "198.52.100.1/32"), entry("webhooks", Ingress, "193.0.2.10/32")}}
	first := Input{Sink: "s", Desired: desired, Current: current}.Calculate()
	if !first.HasChanges() {
		t.Fatal("first plan has no changes")
	}
	second := Input{Sink: "s", Desired: desired, Current: State{Owned: first.Result()}}.Calculate()
	if second.HasChanges() {
		t.Fatalf("second plan not empty: add %v remove %v", second.Add, second.Remove)
	}
	if second.Unchanged() != len(first.Result()) {
		t.Errorf("unchanged = %d, want %d", second.Unchanged(), len(first.Result()))
	}
}

func TestEntriesExpandsPorts(t *testing.T) {
	d := DesiredSet{Name: "x", Direction: Egress, Protocol: TCP, Ports: []uint16{8443, 443}, Prefixes: pfx("2001:db9::/48", "193.0.2.1/32")}
	got := d.Entries()
	want := []Entry{
		{Set: "x", Direction: Egress, Protocol: TCP, Port: 443, Prefix: netip.MustParsePrefix("193.0.2.1/32")},
		{Set: "x", Direction: Egress, Protocol: TCP, Port: 443, Prefix: netip.MustParsePrefix("2001:db9::/48")},
		{Set: "x", Direction: Egress, Protocol: TCP, Port: 8443, Prefix: netip.MustParsePrefix("193.0.2.1/32")},
		{Set: "x", Direction: Egress, Protocol: TCP, Port: 8443, Prefix: netip.MustParsePrefix("2001:db9::/48")},
	}
	if diff := cmp.Diff(want, got, cmpPrefix); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}
}

func TestAggregate(t *testing.T) {
	tests := []struct {
		in, want []string
	}{
		{[]string{"193.0.2.0/25", "193.0.2.128/25"}, []string{"193.0.2.0/24"}},
		{[]string{"193.0.2.5/24", "193.0.2.10/32"}, []string{"193.0.2.0/24"}},
		{[]string{"2001:db9::1/128", "193.0.2.1/32", "193.0.2.1/32"}, []string{"193.0.2.1/32", "2001:db9::1/128"}},
		{[]string{"193.0.2.0/32", "193.0.2.1/32", "193.0.2.2/32"}, []string{"193.0.2.0/31", "193.0.2.2/32"}},
		{nil, nil},
	}
	for _, tt := range tests {
		got, err := Aggregate(pfx(tt.in...))
		if err != nil {
			t.Fatalf("Aggregate(%v): %v", tt.in, err)
		}
		if diff := cmp.Diff(pfx(tt.want...), got, cmpPrefix, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("Aggregate(%v) (-want +got):\n%s", tt.in, diff)
		}
	}
	if _, err := Aggregate([]netip.Prefix{{}}); err == nil {
		t.Error("Aggregate accepted an invalid prefix")
	}
}

func TestLimitsCheck(t *testing.T) {
	tests := []struct {
		prefix string
		ok     bool
	}{
		{"0.0.0.0/0", false},
		{"::/0", false},
		{"52.0.0.0/8", false},
		{"52.1.2.0/24", true},
		{"52.1.2.3/32", true},
		{"10.1.2.3/32", false},
		{"172.16.5.4/32", false},
		{"192.168.1.1/32", false},
		{"100.64.1.1/32", false},
		{"127.0.0.1/32", false},
		{"169.254.169.254/32", false},
		{"224.0.0.1/32", false},
		{"255.255.255.255/32", false},
		{"0.0.0.0/32", false},
		{"193.0.2.10/32", true},
		{"2600:1f18::1/128", true},
		{"2600:1f18::/48", true},
		{"2600:1f18::/32", false},
		{"fd00::1/128", false},
		{"fe80::1/128", false},
		{"ff02::1/128", false},
		{"::1/128", false},
		{"::ffff:1.2.3.4/128", false},
		{"4000::1/128", false},
	}
	for _, tt := range tests {
		err := DefaultLimits.Check(netip.MustParsePrefix(tt.prefix))
		if (err == nil) != tt.ok {
			t.Errorf("Check(%s) = %v, want ok=%v", tt.prefix, err, tt.ok)
		}
		var ue *UnsafePrefixError
		if err != nil && !errors.As(err, &ue) {
			t.Errorf("Check(%s) error %T is not an UnsafePrefixError", tt.prefix, err)
		}
	}
	wide := Limits{MinIPv4Bits: 16, MinIPv6Bits: 32}
	if err := wide.Check(netip.MustParsePrefix("52.1.0.0/16")); err != nil {
		t.Errorf("configured /16 limit refused 52.1.0.0/16: %v", err)
	}
	for _, bad := range []Limits{{MinIPv4Bits: 0, MinIPv6Bits: 48}, {MinIPv4Bits: 24, MinIPv6Bits: 0}, {MinIPv4Bits: 33, MinIPv6Bits: 48}, {MinIPv4Bits: 24, MinIPv6Bits: 129}} {
		if bad.Validate() == nil {
			t.Errorf("Validate(%+v) accepted", bad)
		}
	}
}

func TestParseDirection(t *testing.T) {
	for in, want := range map[string]Direction{"ingress": Ingress, "EGRESS": Egress} {
		if got, err := ParseDirection(in); err != nil || got != want {
			t.Errorf("ParseDirection(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseDirection("inbound"); err == nil {
		t.Error("ParseDirection accepted inbound")
	}
}

func TestMaxDelete(t *testing.T) {
	plan := func(keep, remove int) SinkPlan {
		p := SinkPlan{Sink: "s"}
		for i := range keep {
			p.Keep = append(p.Keep, entry("x", Ingress, netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}).String()+"/32"))
		}
		for i := range remove {
			p.Remove = append(p.Remove, entry("x", Ingress, netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}).String()+"/32"))
		}
		return p
	}
	tests := []struct {
		flag         string
		keep, remove int
		refused      bool
	}{
		{"30%", 7, 3, false}, // 30% exactly
		{"30%", 6, 4, true},  // 40%
		{"30%", 3, 6, false}, // fewer than 10 existing
		{"30%", 0, 10, true}, // wiping 10
		{"30%", 100, 0, false},
		{"5", 20, 5, false},
		{"5", 20, 6, true},
		{"0", 20, 1, true},
		{"100%", 0, 50, false},
	}
	for _, tt := range tests {
		m, err := ParseMaxDelete(tt.flag)
		if err != nil {
			t.Fatal(err)
		}
		err = m.Check(plan(tt.keep, tt.remove))
		if (err != nil) != tt.refused {
			t.Errorf("max-delete %s, keep %d remove %d: err = %v, want refused=%v", tt.flag, tt.keep, tt.remove, err, tt.refused)
		}
		var ge *GuardError
		if err != nil && (!errors.As(err, &ge) || !strings.Contains(err.Error(), "--force")) {
			t.Errorf("refusal %q does not say how to override", err)
		}
	}
	for _, bad := range []string{"", "abc", "-1", "120%", "x%"} {
		if _, err := ParseMaxDelete(bad); err == nil {
			t.Errorf("ParseMaxDelete(%q) accepted", bad)
		}
	}
}

func TestFingerprint(t *testing.T) {
	a := State{Owned: []Entry{entry("x", Ingress, "193.0.2.1/32"), entry("x", Ingress, "193.0.2.2/32")}}
	b := State{Owned: []Entry{entry("x", Ingress, "193.0.2.2/32"), entry("x", Ingress, "193.0.2.1/32")}}
	if a.Fingerprint() != b.Fingerprint() {
		t.Error("order changed the fingerprint")
	}
	for name, c := range map[string]State{
		"fewer":   {Owned: a.Owned[:1]},
		"foreign": {Foreign: a.Owned},
		"drift":   {Owned: a.Owned, Drift: []string{"jump missing"}},
	} {
		if c.Fingerprint() == a.Fingerprint() {
			t.Errorf("%s: fingerprint unchanged", name)
		}
	}
}
