package synccmd_test

import (
	"context"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pdsafelist/pdsafelist/pkg/cmd/root"
	"github.com/pdsafelist/pdsafelist/pkg/cmdutil"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/dnstest"
)

// limitsEnv runs sync against a DNS test server and an HTTPS list, both
// serving the hooks set, into an nftables file. It is self-contained so
// it does not depend on the other test files' helpers.
type limitsEnv struct {
	t    *testing.T
	dir  string
	dns  *dnstest.Server
	list atomic.Value // string: the list body
	url  string
	ca   string
	now  time.Time
}

func newLimitsEnv(t *testing.T) *limitsEnv {
	e := &limitsEnv{t: t, dir: t.TempDir(), now: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)}
	e.dns = dnstest.StartT(t, dnstest.Zone{"hooks.test": {A: []string{"193.0.2.10"}}})
	e.list.Store(`["193.0.2.20", "2001:db9::1"]`)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(e.list.Load().(string)))
	}))
	t.Cleanup(srv.Close)
	e.url = srv.URL + "/list.json"
	e.ca = filepath.Join(e.dir, "ca.pem")
	if err := os.WriteFile(e.ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	e.config()
	return e
}

func (e *limitsEnv) config(static ...string) {
	e.t.Helper()
	cfg := fmt.Sprintf("sets: [hooks]\ncatalog:\n  hooks:\n    direction: ingress\n    ports: [443]\n    dns: [hooks.test]\n    urls: [%q]\n", e.url)
	if len(static) > 0 {
		cfg += fmt.Sprintf("    static: [%s]\n", strings.Join(static, ", "))
	}
	if err := os.WriteFile(filepath.Join(e.dir, "pdsafelist.yaml"), []byte(cfg), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

// staticOnly replaces the config with one static set.
func (e *limitsEnv) staticOnly(entries []string) {
	e.t.Helper()
	cfg := fmt.Sprintf("sets: [hooks]\ncatalog:\n  hooks:\n    direction: ingress\n    ports: [443]\n    static: [%s]\n", strings.Join(entries, ", "))
	if err := os.WriteFile(filepath.Join(e.dir, "pdsafelist.yaml"), []byte(cfg), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

func (e *limitsEnv) sync(args ...string) limitsResult {
	e.t.Helper()
	streams, out, errOut := cmdutil.Test()
	f := root.NewFactory(streams)
	f.Now = func() time.Time { return e.now }
	base := []string{"sync", "--config", filepath.Join(e.dir, "pdsafelist.yaml"), "--state-dir", filepath.Join(e.dir, "state"),
		"--sink", "nftables:" + filepath.Join(e.dir, "out.nft") + "?check=never",
		"--nameserver", e.dns.Addr(), "--ca-file", e.ca, "--timeout", "5s"}
	code := root.Execute(context.Background(), f, append(base, args...))
	return limitsResult{code, out.String(), errOut.String()}
}

type limitsResult struct {
	code        int
	out, errOut string
}

func (e *limitsEnv) file() string {
	data, _ := os.ReadFile(filepath.Join(e.dir, "out.nft"))
	return string(data)
}

// Non-global answers and list entries freeze the set with exit 3, exactly
// as private ranges do, and the firewall keeps what it held (issue 11
// item 6). An entry with host bits set fails its source with a line naming
// the source and the entry.
func TestNonGlobalRangesFreezeEndToEnd(t *testing.T) {
	e := newLimitsEnv(t)
	if r := e.sync(); r.code != 0 || !strings.Contains(e.file(), "193.0.2.20") {
		t.Fatalf("first sync: code %d\n%s%s", r.code, r.out, r.errOut)
	}
	before := e.file()
	expect := func(what string, code int, wantErr ...string) {
		t.Helper()
		r := e.sync()
		if r.code != code || !strings.Contains(r.out, "FROZEN") {
			t.Errorf("%s: code %d (want %d), set not shown frozen\n%s%s", what, r.code, code, r.out, r.errOut)
		}
		for _, w := range wantErr {
			if !strings.Contains(r.errOut, w) {
				t.Errorf("%s: stderr %q lacks %q", what, r.errOut, w)
			}
		}
		if e.file() != before {
			t.Errorf("%s: the firewall file changed:\n%s", what, e.file())
		}
	}
	for _, bad := range []struct{ addr, name string }{
		{"192.0.2.1", "Documentation (TEST-NET-1)"},
		{"198.18.0.1", "Benchmarking"},
		{"198.51.100.20", "Documentation (TEST-NET-2)"},
		{"203.0.113.5", "Documentation (TEST-NET-3)"},
		{"10.0.0.1", "Private-Use"},
	} {
		e.dns.Set("hooks.test", dnstest.Record{A: []string{"193.0.2.10", bad.addr}})
		expect("DNS answer "+bad.addr, 3, "dns hooks.test", "unsafe prefix "+bad.addr+"/32", bad.name)
	}
	e.dns.Set("hooks.test", dnstest.Record{A: []string{"193.0.2.10"}})
	for _, bad := range []struct{ entry, prefix, name string }{
		{"2001:db8::1", "2001:db8::1/128", "Documentation 2001:db8::/32"},
		{"2002:a00:1::/48", "2002:a00:1::/48", "6to4 2002::/16"},
		{"2001:0:4136:e378:8000:63bf:3fff:fdd2", "2001:0:4136:e378:8000:63bf:3fff:fdd2/128", "TEREDO 2001::/32"},
	} {
		e.list.Store(fmt.Sprintf(`["193.0.2.20", %q]`, bad.entry))
		expect("list entry "+bad.entry, 3, e.url, "unsafe prefix "+bad.prefix, bad.name)
	}
	e.list.Store(`["193.0.2.20", "44.242.69.192/24"]`)
	expect("list entry with host bits", 1, e.url+`: entry 2 "44.242.69.192/24": host bits set`)
	e.list.Store(`["193.0.2.20", "2001:db9::1"]`)
	e.config("44.242.69.192/24")
	expect("static entry with host bits", 1, `catalog.hooks.static: entry 1 "44.242.69.192/24": host bits set`)
	if strings.Contains(before, "44.242.69") {
		t.Fatal("a typo'd prefix reached the firewall")
	}
}

// Holding the 16 odd addresses of 44.243.0.0/27, the source adds the 16
// even ones: the union aggregates to one /27 that still allows every held
// address, so max-delete does not count it, even at 0 (issue 11 item 5).
func TestMaxDeleteAllowsReshapingEndToEnd(t *testing.T) {
	e := newLimitsEnv(t)
	var odd, all []string
	for i := range 32 {
		all = append(all, fmt.Sprintf("44.243.0.%d", i))
		if i%2 == 1 {
			odd = append(odd, all[i])
		}
	}
	e.staticOnly(odd)
	if r := e.sync(); r.code != 0 || strings.Count(e.file(), "44.243.0.") != 16 {
		t.Fatalf("first sync: code %d\n%s%s\n%s", r.code, r.out, r.errOut, e.file())
	}
	e.staticOnly(all)
	for _, flag := range []string{"30%", "0"} {
		if r := e.sync("--dry-run", "--max-delete", flag); r.code != 0 {
			t.Errorf("--max-delete %s: reshaping refused: code %d\n%s%s", flag, r.code, r.out, r.errOut)
		}
	}
	if r := e.sync("--max-delete", "0"); r.code != 0 || !strings.Contains(e.file(), "44.243.0.0/27") || strings.Contains(e.file(), "44.243.0.1/32") {
		t.Fatalf("sync: code %d\n%s%s\n%s", r.code, r.out, r.errOut, e.file())
	}
}

// --max-delete 0 means no removal at all, however small the sink.
func TestMaxDeleteZeroOnSmallSinkEndToEnd(t *testing.T) {
	e := newLimitsEnv(t)
	e.staticOnly([]string{"44.243.0.1", "44.243.0.3", "44.243.0.5"})
	if r := e.sync(); r.code != 0 {
		t.Fatalf("first sync: code %d\n%s", r.code, r.errOut)
	}
	before := e.file()
	e.staticOnly([]string{"44.243.0.1"})
	e.now = e.now.Add(2 * time.Hour) // past retention
	r := e.sync("--max-delete", "0")
	if r.code != 3 || !strings.Contains(r.errOut, "removes 2 of 3 entries, more than --max-delete 0") {
		t.Errorf("code %d, want 3\n%s%s", r.code, r.out, r.errOut)
	}
	if e.file() != before {
		t.Error("a refused plan changed the file")
	}
	if r := e.sync("--max-delete", "2"); r.code != 0 || strings.Contains(e.file(), "44.243.0.5/32") {
		t.Errorf("within the count: code %d\n%s", r.code, r.errOut)
	}
}
