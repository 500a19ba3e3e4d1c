package dns

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	mdns "github.com/miekg/dns"

	"github.com/pdsafelist/pdsafelist/pkg/source"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/dnstest"
)

func resolve(t testing.TB, host string, servers ...*dnstest.Server) source.Result {
	t.Helper()
	var addrs []string
	for _, s := range servers {
		addrs = append(addrs, s.Addr())
	}
	r := New(Config{Nameservers: addrs, QueryTimeout: 300 * time.Millisecond})
	return r.Source(host).Resolve(context.Background())
}

func prefixes(r source.Result) []string {
	var out []string
	for _, a := range r.Addresses {
		out = append(out, a.Prefix.String())
	}
	return out
}

// Subset answers from two servers, three attempts each, union to the
// whole fleet.
func TestUnionOfSubsets(t *testing.T) {
	zone := dnstest.Zone{"events.gslb.example.com": {A: []string{"193.0.2.1", "193.0.2.2", "193.0.2.3", "193.0.2.4", "193.0.2.5", "193.0.2.6"}, Subset: 2}}
	a, b := dnstest.StartT(t, zone), dnstest.StartT(t, zone)
	b.Set("events.gslb.example.com", dnstest.Record{A: zone["events.gslb.example.com"].A[3:], Subset: 1})
	r := resolve(t, "events.gslb.example.com", a, b)
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	// a: 3 attempts x 2 rotating = all 6; b adds nothing new.
	want := []string{"193.0.2.1/32", "193.0.2.2/32", "193.0.2.3/32", "193.0.2.4/32", "193.0.2.5/32", "193.0.2.6/32"}
	if diff := cmp.Diff(want, prefixes(r)); diff != "" {
		t.Errorf("union (-want +got):\n%s", diff)
	}
	if n := a.Count("events.gslb.example.com", mdns.TypeA, ""); n != 3 {
		t.Errorf("server a saw %d A queries, want 3 attempts", n)
	}
}

func TestCNAMEChain(t *testing.T) {
	zone := dnstest.Zone{
		"events.example.com":      {CNAME: "events.gslb.example.com", TTL: 300},
		"events.gslb.example.com": {A: []string{"193.0.2.10"}, AAAA: []string{"2001:db9::10"}, TTL: 30, Junk: []string{"203.1.113.66"}},
		"api.example.com":         {CNAME: "api.edge.example.net", NoChase: true},
		"api.edge.example.net":    {CNAME: "api.lb.example.net", NoChase: true},
		"api.lb.example.net":      {A: []string{"198.52.100.7"}},
	}
	s := dnstest.StartT(t, zone)
	r := resolve(t, "Events.Example.com.", s)
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	if diff := cmp.Diff([]string{"193.0.2.10/32", "2001:db9::10/128"}, prefixes(r)); diff != "" {
		t.Errorf("addresses (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"events.gslb.example.com"}, r.CNAMEs); diff != "" {
		t.Errorf("cnames (-want +got):\n%s", diff)
	}
	if r.Addresses[0].TTL != 30*time.Second || r.Name != "events.example.com" {
		t.Errorf("ttl %s name %q", r.Addresses[0].TTL, r.Name)
	}
	// Answers holding only the CNAME are followed with new queries.
	r = resolve(t, "api.example.com", s)
	if r.Err != nil || len(r.Addresses) != 1 || r.Addresses[0].Prefix != netip.MustParsePrefix("198.52.100.7/32") {
		t.Fatalf("followed chain: %v %v", r.Addresses, r.Err)
	}
	if diff := cmp.Diff([]string{"api.edge.example.net", "api.lb.example.net"}, r.CNAMEs); diff != "" {
		t.Errorf("cnames (-want +got):\n%s", diff)
	}
	if s.Count("api.lb.example.net", mdns.TypeA, "") == 0 {
		t.Error("target was never queried")
	}
}

// A recursive server's CNAME chain ending without AAAA data is NODATA: the
// target is not asked again, which would cost a second round trip.
func TestRecursiveCNAMEWithoutDataIsNoData(t *testing.T) {
	s := dnstest.StartT(t, dnstest.Zone{
		"events.example.com":      {CNAME: "events.gslb.example.com"},
		"events.gslb.example.com": {A: []string{"193.0.2.10"}},
	})
	r := resolve(t, "events.example.com", s)
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	if diff := cmp.Diff([]string{"193.0.2.10/32"}, prefixes(r)); diff != "" {
		t.Errorf("addresses (-want +got):\n%s", diff)
	}
	if n := s.Count("events.gslb.example.com", mdns.TypeAAAA, ""); n != 0 {
		t.Errorf("target asked for AAAA %d times after a complete NODATA chain", n)
	}
}

func TestCNAMEFailures(t *testing.T) {
	zone := dnstest.Zone{
		"loop.example.com":    {CNAME: "loop2.example.com", NoChase: true},
		"loop2.example.com":   {CNAME: "loop.example.com", NoChase: true},
		"inloop.example.com":  {CNAME: "inloop2.example.com"},
		"inloop2.example.com": {CNAME: "inloop.example.com"},
	}
	for i := range 10 {
		zone[fmt.Sprintf("d%d.example.com", i)] = dnstest.Record{CNAME: fmt.Sprintf("d%d.example.com", i+1), NoChase: i%2 == 0}
	}
	zone["d10.example.com"] = dnstest.Record{A: []string{"193.0.2.1"}}
	s := dnstest.StartT(t, zone)
	for host, want := range map[string]string{
		"loop.example.com":   "CNAME loop",
		"inloop.example.com": "CNAME loop",
		"d0.example.com":     "CNAME chain longer than 8",
	} {
		r := resolve(t, host, s)
		if r.Err == nil || !strings.Contains(r.Err.Error(), want) {
			t.Errorf("%s: err %v, want %q", host, r.Err, want)
		}
		if len(r.Addresses) != 0 {
			t.Errorf("%s: failure carries addresses", host)
		}
	}
	if r := resolve(t, "d3.example.com", s); r.Err != nil || len(r.Addresses) != 1 {
		t.Errorf("7-hop chain: %v %v", r.Addresses, r.Err)
	}
}

func TestTruncatedAnswerRetriesOverTCP(t *testing.T) {
	var many []string
	for i := range 120 {
		many = append(many, fmt.Sprintf("198.52.100.%d", i+1))
	}
	s := dnstest.StartT(t, dnstest.Zone{"big.example.com": {A: many}})
	r := resolve(t, "big.example.com", s)
	if r.Err != nil || len(r.Addresses) != 120 {
		t.Fatalf("got %d addresses, err %v", len(r.Addresses), r.Err)
	}
	if s.Count("big.example.com", mdns.TypeA, "tcp") == 0 {
		t.Error("no TCP query after a truncated UDP answer")
	}
}

// Failure is never an empty answer.
func TestAllServersFail(t *testing.T) {
	tests := []struct {
		fault dnstest.Fault
		want  string
	}{
		{dnstest.ServFail, "SERVFAIL"},
		{dnstest.NXDomain, "NXDOMAIN"},
		{dnstest.Refused, "REFUSED"},
		{dnstest.Drop, "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			zone := dnstest.Zone{"x.example.com": {A: []string{"193.0.2.1"}, Fault: tt.fault}}
			a, b := dnstest.StartT(t, zone), dnstest.StartT(t, zone)
			start := time.Now()
			r := resolve(t, "x.example.com", a, b)
			if r.Err == nil || len(r.Addresses) != 0 {
				t.Fatalf("want failure, got %v %v", r.Addresses, r.Err)
			}
			msg := r.Err.Error()
			if !strings.Contains(msg, "dns x.example.com: A: all 2 nameservers failed") || !strings.Contains(msg, a.Addr()+" "+tt.want) || strings.Contains(msg, "\n") {
				t.Errorf("message %q", msg)
			}
			// Queries run at once: a dead server costs one timeout, not
			// attempts x servers of them.
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("took %s", d)
			}
		})
	}
}

func TestPartialFailureWarns(t *testing.T) {
	good := dnstest.StartT(t, dnstest.Zone{"x.example.com": {A: []string{"193.0.2.1"}}})
	bad := dnstest.StartT(t, dnstest.Zone{"x.example.com": {Fault: dnstest.ServFail}})
	r := resolve(t, "x.example.com", good, bad)
	if r.Err != nil || len(r.Addresses) != 1 {
		t.Fatalf("%v %v", r.Addresses, r.Err)
	}
	if len(r.Warnings) == 0 || !strings.Contains(strings.Join(r.Warnings, ";"), bad.Addr()+" SERVFAIL") {
		t.Errorf("warnings %v", r.Warnings)
	}
}

func TestNoData(t *testing.T) {
	s := dnstest.StartT(t, dnstest.Zone{"v4.example.com": {A: []string{"193.0.2.1"}}, "none.example.com": {}})
	if r := resolve(t, "v4.example.com", s); r.Err != nil || len(r.Addresses) != 1 {
		t.Errorf("AAAA NODATA: %v %v", r.Addresses, r.Err)
	}
	if r := resolve(t, "none.example.com", s); r.Err != nil || len(r.Addresses) != 0 {
		t.Errorf("all NODATA: %v %v", r.Addresses, r.Err)
	}
}

// AAAA failing alone still fails the source: half an answer would remove
// the other family.
func TestOneTypeFailing(t *testing.T) {
	s := dnstest.StartT(t, dnstest.Zone{"x.example.com": {A: []string{"193.0.2.1"}, FailAAAA: true}})
	r := resolve(t, "x.example.com", s)
	if r.Err == nil || !strings.Contains(r.Err.Error(), "AAAA: all 1 nameservers failed") || len(r.Addresses) != 0 {
		t.Fatalf("want AAAA failure, got %v %v", r.Addresses, r.Err)
	}
}

func TestDeadServerBesideGoodOne(t *testing.T) {
	s := dnstest.StartT(t, dnstest.Zone{"x.example.com": {A: []string{"193.0.2.1"}}})
	r := New(Config{Nameservers: []string{s.Addr(), "127.0.0.1:1"}, QueryTimeout: 200 * time.Millisecond}).Source("x.example.com").Resolve(context.Background())
	if r.Err != nil || len(r.Addresses) != 1 || len(r.Warnings) == 0 {
		t.Fatalf("one dead server: %v %v %v", r.Addresses, r.Err, r.Warnings)
	}
}

func TestContextCancelled(t *testing.T) {
	s := dnstest.StartT(t, dnstest.Zone{"x.example.com": {A: []string{"193.0.2.1"}}})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := New(Config{Nameservers: []string{s.Addr()}}).Source("x.example.com").Resolve(ctx)
	if r.Err == nil {
		t.Fatal("cancelled lookup succeeded")
	}
}

func TestTTLKeepsLongest(t *testing.T) {
	zone := dnstest.Zone{"x.example.com": {A: []string{"193.0.2.1"}, TTL: 60}}
	a, b := dnstest.StartT(t, zone), dnstest.StartT(t, zone)
	b.Set("x.example.com", dnstest.Record{A: []string{"193.0.2.1"}, TTL: 600})
	r := resolve(t, "x.example.com", a, b)
	if r.Err != nil || r.Addresses[0].TTL != 600*time.Second {
		t.Errorf("%v %v", r.Addresses, r.Err)
	}
}

func TestNameservers(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(conf, []byte("# comment\nnameserver 193.0.2.53\nnameserver 2001:db9::53\nsearch example.com\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := NameserversFromResolvConf(conf)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"193.0.2.53:53", "[2001:db9::53]:53"}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	empty := filepath.Join(dir, "empty.conf")
	_ = os.WriteFile(empty, []byte("search example.com\n"), 0o644)
	for _, path := range []string{empty, filepath.Join(dir, "missing")} {
		if _, err := NameserversFromResolvConf(path); err == nil {
			t.Errorf("%s: accepted", path)
		}
	}
	for in, want := range map[string]string{
		"1.1.1.1": "1.1.1.1:53", "1.1.1.1:5353": "1.1.1.1:5353", "::1": "[::1]:53", "[::1]:5353": "[::1]:5353",
		"ns1.example.com": "ns1.example.com:53", "ns1.example.com:54": "ns1.example.com:54",
	} {
		if got, err := NormalizeNameserver(in); err != nil || got != want {
			t.Errorf("NormalizeNameserver(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "1.1.1.1:0", "1.1.1.1:99999", ":53", "not a host", "a_b:x"} {
		if got, err := NormalizeNameserver(bad); err == nil {
			t.Errorf("NormalizeNameserver(%q) = %q, accepted", bad, got)
		}
	}
}

// BenchmarkResolveDelayed resolves the six PagerDuty names concurrently,
// as a sync does, against two servers that delay every answer by 50ms. The
// x-latency metric is wall time over that delay: one round trip is 1.0.
func BenchmarkResolveDelayed(b *testing.B) {
	const delay = 50 * time.Millisecond
	zone := dnstest.Zone{}
	var hosts []string
	for _, region := range []string{"", ".eu"} {
		for _, name := range []string{"events", "api", "app"} {
			host := name + region + ".pagerduty.com"
			hosts = append(hosts, host)
			zone[host] = dnstest.Record{CNAME: name + region + ".gslb.pagerduty.com"}
			zone[name+region+".gslb.pagerduty.com"] = dnstest.Record{A: []string{"193.0.2.1", "193.0.2.2", "193.0.2.3", "193.0.2.4"}, AAAA: []string{"2001:db9::1"}, Subset: 2}
		}
	}
	var servers []string
	for range 2 {
		s := dnstest.StartT(b, zone)
		s.SetDelay(delay)
		servers = append(servers, s.Addr())
	}
	r := New(Config{Nameservers: servers, Attempts: 3, QueryTimeout: 2 * time.Second})
	var total time.Duration
	for b.Loop() {
		start := time.Now()
		var wg sync.WaitGroup
		for _, h := range hosts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if res := r.Source(h).Resolve(context.Background()); res.Err != nil || len(res.Addresses) != 5 {
					b.Errorf("%s: %d addresses, %v", h, len(res.Addresses), res.Err)
				}
			}()
		}
		wg.Wait()
		total += time.Since(start)
	}
	b.ReportMetric(float64(total)/float64(b.N)/float64(delay), "x-latency")
}
