package sync_test

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
}

func newLimitsEnv(t *testing.T) *limitsEnv {
	e := &limitsEnv{t: t, dir: t.TempDir()}
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

func (e *limitsEnv) sync(args ...string) limitsResult {
	e.t.Helper()
	streams, out, errOut := cmdutil.Test()
	f := root.NewFactory(streams)
	f.Now = func() time.Time { return time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC) }
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
