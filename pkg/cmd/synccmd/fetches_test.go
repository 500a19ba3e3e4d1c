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
	"github.com/pdsafelist/pdsafelist/pkg/state"
)

// fetchEnv runs sync against two HTTPS lists that serve an ETag, answer
// a matching If-None-Match with 304 and count requests.
type fetchEnv struct {
	t          *testing.T
	dir, ca    string
	url        string
	requests   atomic.Int64
	notMod     atomic.Int64
	status     atomic.Int64
	body, etag atomic.Value
	now        time.Time
}

func newFetchEnv(t *testing.T) *fetchEnv {
	e := &fetchEnv{t: t, dir: t.TempDir(), now: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)}
	e.body.Store(`["193.0.2.20"]`)
	e.etag.Store(`"v1"`)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/old.json" {
			_, _ = w.Write([]byte(`["198.52.100.7"]`))
			return
		}
		e.requests.Add(1)
		if code := e.status.Load(); code != 0 {
			http.Error(w, "down", int(code))
			return
		}
		etag := e.etag.Load().(string)
		w.Header().Set("ETag", etag)
		if r.Header.Get("If-None-Match") == etag {
			e.notMod.Add(1)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		_, _ = w.Write([]byte(e.body.Load().(string)))
	}))
	t.Cleanup(srv.Close)
	e.url = srv.URL
	e.ca = filepath.Join(e.dir, "ca.pem")
	if err := os.WriteFile(e.ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *fetchEnv) config(sources string) {
	e.t.Helper()
	cfg := "sets: [hooks]\ncatalog:\n  hooks:\n    direction: ingress\n    ports: [443]\n    sources:\n" + strings.ReplaceAll(sources, "URL", e.url)
	if err := os.WriteFile(filepath.Join(e.dir, "pdsafelist.yaml"), []byte(cfg), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

func (e *fetchEnv) sync(args ...string) limitsResult {
	e.t.Helper()
	streams, out, errOut := cmdutil.Test()
	f := root.NewFactory(streams)
	f.Now = func() time.Time { return e.now }
	base := []string{"sync", "-v", "--config", filepath.Join(e.dir, "pdsafelist.yaml"), "--state-dir", filepath.Join(e.dir, "state"),
		"--sink", "nftables:" + filepath.Join(e.dir, "out.nft") + "?check=never", "--ca-file", e.ca, "--timeout", "5s"}
	code := root.Execute(context.Background(), f, append(base, args...))
	return limitsResult{code, out.String(), errOut.String()}
}

func (e *fetchEnv) file() string {
	data, _ := os.ReadFile(filepath.Join(e.dir, "out.nft"))
	return string(data)
}

// Sync remembers each list's ETag and answer in the state directory: the
// next run asks conditionally, and a 304 keeps the set as it is. A dry
// run uses the memory but does not write it.
func TestSyncConditionalFetch(t *testing.T) {
	e := newFetchEnv(t)
	e.config("      - {type: http, url: URL/list.json}\n")
	if r := e.sync("--dry-run"); r.code != 0 {
		t.Fatalf("dry run: %d\n%s", r.code, r.errOut)
	}
	if _, err := os.Stat(state.FetchPath(filepath.Join(e.dir, "state"))); err == nil {
		t.Fatal("a dry run wrote the fetch memory")
	}
	if r := e.sync(); r.code != 0 || !strings.Contains(e.file(), "193.0.2.20") {
		t.Fatalf("first sync: %d\n%s", r.code, r.errOut)
	}
	// Anything but a 304 is now garbage that would freeze the set.
	e.body.Store(`garbage`)
	e.now = e.now.Add(time.Minute)
	if r := e.sync(); r.code != 0 || !strings.Contains(e.file(), "193.0.2.20") {
		t.Fatalf("second sync: %d\n%s%s", r.code, r.out, r.errOut)
	}
	if n := e.notMod.Load(); n != 1 {
		t.Fatalf("%d answers were 304, want 1", n)
	}
	// A changed list is fetched and applied.
	e.body.Store(`["203.1.113.5"]`)
	e.etag.Store(`"v2"`)
	if r := e.sync("--grace", "0s"); r.code != 0 || !strings.Contains(e.file(), "203.1.113.5") || strings.Contains(e.file(), "193.0.2.20") {
		t.Fatalf("changed list: %d\n%s\n%s", r.code, r.errOut, e.file())
	}
}

// With min_interval, runs inside it send no request at all; a fleet on a
// one-minute timer asks once an interval.
func TestSyncMinInterval(t *testing.T) {
	e := newFetchEnv(t)
	e.config("      - {type: http, url: URL/list.json, min_interval: 1h}\n")
	for i := range 5 {
		if r := e.sync(); r.code != 0 || !strings.Contains(e.file(), "193.0.2.20") {
			t.Fatalf("run %d: %d\n%s", i, r.code, r.errOut)
		}
		e.now = e.now.Add(time.Minute)
	}
	if n := e.requests.Load(); n != 1 {
		t.Fatalf("%d requests in 5 runs a minute apart with min_interval 1h, want 1", n)
	}
}

// A source with until: is used beside its replacement until the date, and
// dropped on its own from then on, with a log line and no error.
func TestSyncUntil(t *testing.T) {
	e := newFetchEnv(t)
	e.config(fmt.Sprintf("      - {type: http, url: URL/list.json}\n      - {type: http, url: URL/old.json, until: %s}\n", e.now.Add(24*time.Hour).Format(time.DateOnly)))
	if r := e.sync(); r.code != 0 || !strings.Contains(e.file(), "198.52.100.7") || !strings.Contains(e.file(), "193.0.2.20") {
		t.Fatalf("before the cut-over: %d\n%s\n%s", r.code, r.errOut, e.file())
	}
	e.now = e.now.Add(48 * time.Hour)
	r := e.sync("--grace", "0s")
	if r.code != 0 || strings.Contains(e.file(), "198.52.100.7") || !strings.Contains(e.file(), "193.0.2.20") {
		t.Fatalf("after the cut-over: %d\n%s\n%s", r.code, r.errOut, e.file())
	}
	if !strings.Contains(r.errOut, "until date has come") || !strings.Contains(r.errOut, "sources[1]") {
		t.Errorf("the drop is not logged:\n%s", r.errOut)
	}
	e.config("      - {type: http, url: URL/list.json, until: soon}\n")
	if r := e.sync(); r.code == 0 || !strings.Contains(r.errOut, `until "soon"`) {
		t.Errorf("bad until: %d\n%s", r.code, r.errOut)
	}
}

// Failures in a row are remembered across runs: after three, the next
// run inside the back-off sends no request, logs the skip and keeps the
// set frozen as the firewall holds it.
func TestSyncBackoff(t *testing.T) {
	e := newFetchEnv(t)
	e.config("      - {type: http, url: URL/list.json}\n")
	if r := e.sync(); r.code != 0 {
		t.Fatalf("first sync: %d\n%s", r.code, r.errOut)
	}
	e.status.Store(http.StatusServiceUnavailable)
	for i := range 3 {
		e.now = e.now.Add(time.Minute)
		if r := e.sync(); r.code == 0 || !strings.Contains(r.errOut, "503") {
			t.Fatalf("failure %d: %d\n%s", i, r.code, r.errOut)
		}
	}
	asked := e.requests.Load()
	e.now = e.now.Add(30 * time.Second)
	r := e.sync()
	if r.code == 0 || !strings.Contains(r.errOut, "backing off after 3 failures") || e.requests.Load() != asked {
		t.Fatalf("inside the back-off: %d, %d requests (was %d)\n%s", r.code, e.requests.Load(), asked, r.errOut)
	}
	if !strings.Contains(e.file(), "193.0.2.20") {
		t.Fatalf("a backed-off set was emptied:\n%s", e.file())
	}
}

// Two sets that read one published document with different jq (an AWS
// or GitHub list used for two services) send one request per run, not
// one each; each still parses the answer itself. Before: two requests.
func TestSyncOneRequestPerSharedURL(t *testing.T) {
	e := newFetchEnv(t)
	e.body.Store(`{"hooks": ["193.0.2.20"], "api": ["193.0.2.21"]}`)
	cfg := "sets: [hooks, ghapi]\ncatalog:\n" +
		"  hooks:\n    direction: ingress\n    ports: [443]\n    sources:\n      - {type: http, url: URL/meta.json, jq: '.hooks[]'}\n" +
		"  ghapi:\n    direction: egress\n    ports: [443]\n    sources:\n      - {type: http, url: URL/meta.json, jq: '.api[]'}\n"
	if err := os.WriteFile(filepath.Join(e.dir, "pdsafelist.yaml"), []byte(strings.ReplaceAll(cfg, "URL", e.url)), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := e.sync(); r.code != 0 || !strings.Contains(e.file(), "193.0.2.20") || !strings.Contains(e.file(), "193.0.2.21") {
		t.Fatalf("first sync: %d\n%s\n%s", r.code, r.errOut, e.file())
	}
	if n := e.requests.Load(); n != 1 {
		t.Errorf("first run: %d requests for one URL, want 1", n)
	}
	// Both lists remembered the same ETag: the conditional requests are
	// one request too, and its 304 keeps both sets.
	e.now = e.now.Add(time.Minute)
	if r := e.sync(); r.code != 0 || !strings.Contains(e.file(), "193.0.2.21") {
		t.Fatalf("second sync: %d\n%s", r.code, r.errOut)
	}
	if n, nm := e.requests.Load(), e.notMod.Load(); n != 2 || nm != 1 {
		t.Errorf("second run: %d requests in all and %d answered 304, want 2 and 1", n, nm)
	}
	// A failed answer fails both sets' sources, each naming the URL.
	e.status.Store(http.StatusServiceUnavailable)
	e.now = e.now.Add(time.Minute)
	r := e.sync()
	if n := e.requests.Load(); n != 3 {
		t.Errorf("failing run: %d requests in all, want 3", n)
	}
	if strings.Count(r.errOut, "503") < 2 || !strings.Contains(e.file(), "193.0.2.21") {
		t.Errorf("failing run: want both sources failed and the sets kept, got %d\n%s\n%s", r.code, r.errOut, e.file())
	}
}
