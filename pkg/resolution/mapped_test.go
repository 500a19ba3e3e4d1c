package resolution

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/source"
	"github.com/pdsafelist/pdsafelist/pkg/source/dns"
	"github.com/pdsafelist/pdsafelist/pkg/source/file"
	"github.com/pdsafelist/pdsafelist/pkg/source/listformat"
	"github.com/pdsafelist/pdsafelist/pkg/source/static"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/dnstest"
)

// An IPv4-mapped IPv6 address (::ffff:0:0/96, "not globally reachable" in
// the IANA registry) is refused from every kind of list, as any other
// special-purpose address is, rather than silently unmapped and opened
// (issue 20 item 7).
func TestRunRefusesIPv4Mapped(t *testing.T) {
	dir := t.TempDir()
	list := func(t *testing.T, name, format, body string) source.Source {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		p, err := listformat.New(format, "")
		if err != nil {
			t.Fatal(err)
		}
		return file.New(path, p, 0)
	}
	jq := func(t *testing.T) source.Source {
		t.Helper()
		path := filepath.Join(dir, "jq.json")
		if err := os.WriteFile(path, []byte(`{"v4":["::ffff:44.242.69.192"]}`), 0o600); err != nil {
			t.Fatal(err)
		}
		p, err := listformat.New("json", ".v4[]")
		if err != nil {
			t.Fatal(err)
		}
		return file.New(path, p, 0)
	}
	zone := dnstest.StartT(t, dnstest.Zone{"mapped.example.com": {A: []string{"193.0.2.3"}, AAAA: []string{"::ffff:44.242.69.192"}, TTL: 60}})
	good := fakeSource{name: "good", addrs: []string{"193.0.2.1/32"}}
	for name, bad := range map[string]func(t *testing.T) source.Source{
		"json address": func(t *testing.T) source.Source {
			return list(t, "a.json", "json", `["193.0.2.2", "::ffff:44.242.69.192"]`)
		},
		"json escaped": func(t *testing.T) source.Source { return list(t, "e.json", "json", `["\u003a:ffff:44.242.69.192"]`) },
		"json block":   func(t *testing.T) source.Source { return list(t, "b.json", "json", `["::ffff:0:0/96"]`) },
		"text address": func(t *testing.T) source.Source { return list(t, "a.txt", "text", "193.0.2.2\n::ffff:44.242.69.192\n") },
		"text prefix":  func(t *testing.T) source.Source { return list(t, "p.txt", "text", "::ffff:44.242.69.0/120\n") },
		"jq":           jq,
		"dns AAAA": func(*testing.T) source.Source {
			return dns.New(dns.Config{Nameservers: []string{zone.Addr()}, QueryTimeout: time.Second}).Source("mapped.example.com")
		},
		"static": func(*testing.T) source.Source { return static.New("s", []string{"::ffff:44.242.69.192"}) },
	} {
		t.Run(name, func(t *testing.T) {
			r := run(t, spec, good, bad(t))
			if !r.Desired.Frozen || len(r.Desired.Prefixes) != 0 {
				t.Fatalf("set not frozen: %+v", r.Desired)
			}
			var pe *plan.UnsafePrefixError
			if !errors.As(r.Err, &pe) || !strings.Contains(r.Desired.Reason, "IPv4-mapped Address ::ffff:0.0.0.0/96 (RFC 4291)") || strings.Contains(r.Desired.Reason, "\n") {
				t.Errorf("reason %q (%v): want a one-line unsafe prefix naming the IPv4-mapped block", r.Desired.Reason, r.Err)
			}
		})
	}
}
