package dns

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pdsafelist/pdsafelist/pkg/testutil/dnstest"
)

// A silent nameserver beside a healthy one neither stalls nor fails a
// name: it is resolved from the healthy one, the next step of its CNAME
// chain does not wait on the silent one again, and the silent one is
// named once, not once per type and step.
func TestSilentServerNeitherStallsNorFails(t *testing.T) {
	good := dnstest.StartT(t, dnstest.Zone{
		"events.example.com":      {CNAME: "events.gslb.example.net", NoChase: true},
		"events.gslb.example.net": {A: []string{"193.0.2.1"}, AAAA: []string{"2001:db9::1"}},
	})
	silent := dnstest.Silent(t)
	r := New(Config{Nameservers: []string{good.Addr(), silent}, QueryTimeout: 2 * time.Second})
	start := time.Now()
	res := r.Source("events.example.com").Resolve(context.Background())
	took := time.Since(start)
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if diff := cmp.Diff([]string{"193.0.2.1/32", "2001:db9::1/128"}, prefixes(res)); diff != "" {
		t.Errorf("addresses (-want +got):\n%s", diff)
	}
	if took > time.Second {
		t.Errorf("took %s with a 2s query timeout: waited on the silent server", took)
	}
	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "nameserver "+silent+" ") || strings.Contains(res.Warnings[0], good.Addr()) {
		t.Errorf("warnings %q, want one naming %s", res.Warnings, silent)
	}
}

// A server failing one type only is named with that type; one failing
// both alike, once with its reason.
func TestWarningsNameEachServerOnce(t *testing.T) {
	good := dnstest.StartT(t, dnstest.Zone{"x.example.com": {A: []string{"193.0.2.1"}, AAAA: []string{"2001:db9::1"}}})
	half := dnstest.StartT(t, dnstest.Zone{"x.example.com": {A: []string{"193.0.2.1"}, FailAAAA: true}})
	bad := dnstest.StartT(t, dnstest.Zone{"x.example.com": {Fault: dnstest.ServFail}})
	res := resolve(t, "x.example.com", good, half, bad)
	want := []string{"nameserver " + half.Addr() + " AAAA SERVFAIL", "nameserver " + bad.Addr() + " SERVFAIL"}
	if diff := cmp.Diff(want, res.Warnings); res.Err != nil || diff != "" {
		t.Errorf("err %v, warnings (-want +got):\n%s", res.Err, diff)
	}
}
