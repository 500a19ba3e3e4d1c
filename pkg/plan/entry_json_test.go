package plan

import (
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// A prefix list holds CIDRs only: its entries carry no empty direction or
// protocol in JSON, and such an entry reads back the same.
func TestEntryJSONOmitsEmptyDirectionAndProtocol(t *testing.T) {
	e := Entry{Set: "pl", Prefix: netip.MustParsePrefix("44.242.69.0/24")}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"direction"`, `"protocol"`} {
		if strings.Contains(string(b), k) {
			t.Errorf("%s carries %s", b, k)
		}
	}
	var back Entry
	if err := json.Unmarshal(b, &back); err != nil || back != e {
		t.Errorf("round trip: %+v, %v", back, err)
	}
	full := Entry{Set: "api", Prefix: e.Prefix, Direction: Egress, Protocol: TCP, Port: 443}
	b, _ = json.Marshal(full)
	if !strings.Contains(string(b), `"direction":"egress"`) || !strings.Contains(string(b), `"protocol":"tcp"`) {
		t.Errorf("full entry %s lost its direction or protocol", b)
	}
}

// Entries read back from JSON (saved plans) take the names exactly as
// written; anything else, another spelling included, is a NameError.
func TestEntryJSONNames(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Entry
		bad  string
	}{
		{in: `{"set":"a","prefix":"44.1.2.0/24","direction":"ingress","protocol":"udp","port":53}`,
			want: Entry{Set: "a", Prefix: netip.MustParsePrefix("44.1.2.0/24"), Direction: Ingress, Protocol: UDP, Port: 53}},
		{in: `{"set":"a","prefix":"44.1.2.0/24","direction":"","protocol":"","port":0}`,
			want: Entry{Set: "a", Prefix: netip.MustParsePrefix("44.1.2.0/24")}},
		{in: `{"set":"a","prefix":"44.1.2.0/24","direction":"INGRESS","protocol":"tcp","port":1}`, bad: `direction "INGRESS"`},
		{in: `{"set":"a","prefix":"44.1.2.0/24","direction":"inbound","protocol":"tcp","port":1}`, bad: `direction "inbound"`},
		{in: `{"set":"a","prefix":"44.1.2.0/24","direction":"egress","protocol":"icmp","port":1}`, bad: `protocol "icmp"`},
		{in: `{"set":"a","prefix":"44.1.2.0/24","direction":"egress","protocol":"TCP","port":1}`, bad: `protocol "TCP"`},
	} {
		var got Entry
		err := json.Unmarshal([]byte(tt.in), &got)
		var ne *NameError
		switch {
		case tt.bad == "" && (err != nil || got != tt.want):
			t.Errorf("%s: got %+v, %v; want %+v", tt.in, got, err, tt.want)
		case tt.bad != "" && (!errors.As(err, &ne) || !strings.Contains(err.Error(), tt.bad)):
			t.Errorf("%s: error %v, want a NameError naming %s", tt.in, err, tt.bad)
		}
	}
}
