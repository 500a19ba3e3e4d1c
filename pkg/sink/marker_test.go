package sink

import "testing"

func TestMarkerRoundTrip(t *testing.T) {
	tests := []struct {
		owner, desc string
		set         string
		ok          bool
	}{
		{"", "pdsafelist:webhooks", "webhooks", true},
		{"", "pdsafelist:team:webhooks", "", false},
		{"team", "pdsafelist:team:webhooks", "webhooks", true},
		{"team", "pdsafelist:webhooks", "", false},
		{"team", "pdsafelist:other:webhooks", "", false},
		{"", "pdsafelist:", "", false},
		{"", "pdsafelist:enforce extra", "", false},
		{"", "allow pagerduty", "", false},
	}
	for _, tt := range tests {
		set, ok := ParseMarker(tt.owner, tt.desc)
		if set != tt.set || ok != tt.ok {
			t.Errorf("ParseMarker(%q, %q) = %q, %v; want %q, %v", tt.owner, tt.desc, set, ok, tt.set, tt.ok)
		}
	}
	for _, owner := range []string{"", "team"} {
		if set, ok := ParseMarker(owner, Marker(owner, "api")); !ok || set != "api" {
			t.Errorf("owner %q: marker does not round-trip: %q %v", owner, set, ok)
		}
	}
}

// FuzzParseMarker reads arbitrary descriptions the way the EC2 sink reads
// rule and entry descriptions: it must never panic, accept only valid set
// names, accept only what Marker writes for that owner, and never take
// another owner's marker for ours.
func FuzzParseMarker(f *testing.F) {
	for _, s := range [][3]string{
		{"", "pdsafelist:webhooks", "events"},
		{"team", "pdsafelist:team:webhooks", "api"},
		{"team", "pdsafelist:webhooks", "app"},
		{"", "pdsafelist:team:webhooks", "x"},
		{"a:b", "pdsafelist:a:b:c", "c"},
		{"", "pdsafelist:", ""},
		{"", "pdsafelist:enforce extra", "Events"},
		{"prod-1 eu/(a)", "pdsafelist:prod-1 eu/(a):events", "a_very_long_set_name_of_31_char"},
		{"", "pdsafelist:a_very_long_set_name_of_32_chars", "9lives"},
		{"", "PDSAFELIST:events", "events\n"},
		{"é", "pdsafelist:é:events", "ev\x00"},
		{"", "allow pagerduty", "a-b"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, owner, desc, set string) {
		got, ok := ParseMarker(owner, desc)
		if ok {
			if !setName.MatchString(got) {
				t.Fatalf("ParseMarker(%q, %q) accepted invalid set name %q", owner, desc, got)
			}
			if m := Marker(owner, got); m != desc {
				t.Fatalf("ParseMarker(%q, %q) = %q, but Marker writes %q", owner, desc, got, m)
			}
		} else if got != "" {
			t.Fatalf("ParseMarker(%q, %q) refused but returned %q", owner, desc, got)
		}
		if !setName.MatchString(set) {
			return
		}
		if back, ok := ParseMarker(owner, Marker(owner, set)); !ok || back != set {
			t.Fatalf("owner %q set %q: Marker does not round-trip: %q %v", owner, set, back, ok)
		}
		// Another owner's marker is never ours; the empty owner's reading
		// of a marker with an owner is refused too.
		other := owner + "x"
		if back, ok := ParseMarker(owner, Marker(other, set)); ok {
			t.Fatalf("owner %q accepted owner %q's marker as set %q", owner, other, back)
		}
		if owner != "" {
			if back, ok := ParseMarker("", Marker(owner, set)); ok {
				t.Fatalf("the empty owner accepted owner %q's marker as set %q", owner, back)
			}
		}
	})
}

// A marker of ours whose set was edited by hand is ours but unreadable;
// one that could be another owner's never is (issue 20 item 3).
func TestUnreadableMarker(t *testing.T) {
	for _, tt := range []struct {
		owner, desc string
		want        bool
	}{
		{"", "pdsafelist:Webhooks edited by ops", true},
		{"", "pdsafelist:", true},
		{"team", "pdsafelist:team:webhooks (old)", true},
		{"", "pdsafelist:webhooks", false},
		{"", "pdsafelist:team:webhooks", false},
		{"team", "pdsafelist:webhooks", false},
		{"team", "pdsafelist:other:Webhooks edited", false},
		{"team", "pdsafelist:team:webhooks", false},
		{"", "allow pagerduty", false},
	} {
		if got := UnreadableMarker(tt.owner, tt.desc); got != tt.want {
			t.Errorf("UnreadableMarker(%q, %q) = %v, want %v", tt.owner, tt.desc, got, tt.want)
		}
	}
}
