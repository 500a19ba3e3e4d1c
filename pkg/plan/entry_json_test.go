package plan

import (
	"encoding/json"
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
