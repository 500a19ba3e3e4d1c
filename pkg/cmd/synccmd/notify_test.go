package synccmd_test

import (
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// event is the part of an Events API v2 request the test checks.
type event struct {
	Path        string `json:"-"`
	RoutingKey  string `json:"routing_key"`
	EventAction string `json:"event_action"`
	DedupKey    string `json:"dedup_key"`
}

// eventsAPI is a local Events API; take returns the events it received
// since the last call.
func eventsAPI(t *testing.T) (*httptest.Server, func() []event) {
	var mu sync.Mutex
	var got []event
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e := event{Path: r.URL.Path}
		if err := json.NewDecoder(r.Body).Decode(&e); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		got = append(got, e)
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write([]byte(`{"status":"success"}`))
	}))
	t.Cleanup(api.Close)
	return api, func() []event {
		mu.Lock()
		defer mu.Unlock()
		out := got
		got = nil
		return out
	}
}

// Sync talks to a local Events API: applied changes are a change event, a
// failed source triggers an alert keyed by host, and the alert resolves
// with the same dedup key once the condition clears.
func TestNotificationsThroughSync(t *testing.T) {
	api, take := eventsAPI(t)
	e := newEnv(t)
	notify := []string{"--notify-routing-key", "R0UT1NG", "--notify-url", api.URL + "/v2/enqueue"}
	host, _ := os.Hostname()
	key := "pdsafelist:" + host + ":source_failed"

	e.config("193.0.2.10")
	if r := e.run(append([]string{"sync"}, notify...)...); r.code != 0 {
		t.Fatalf("first sync: code %d %s", r.code, r.errOut)
	}
	want := []event{{"/v2/change/enqueue", "R0UT1NG", "", ""}}
	if diff := cmp.Diff(want, take()); diff != "" {
		t.Errorf("after applying (-want +got):\n%s", diff)
	}

	cfg := "sets: [hooks]\ncatalog:\n  hooks:\n    direction: ingress\n    ports: [443]\n    urls: [\"https://127.0.0.1:1/list.json\"]\n"
	if err := os.WriteFile(filepath.Join(e.dir, "pdsafelist.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := e.run(append([]string{"sync", "--timeout", "5s"}, notify...)...); r.code != 1 {
		t.Fatalf("failing source: code %d %s", r.code, r.errOut)
	}
	want = []event{{"/v2/enqueue", "R0UT1NG", "trigger", key}}
	if diff := cmp.Diff(want, take(), sortEvents); diff != "" {
		t.Errorf("after a failed source (-want +got):\n%s", diff)
	}

	e.config("193.0.2.10")
	if r := e.run(append([]string{"sync"}, notify...)...); r.code != 0 {
		t.Fatalf("recovered: code %d %s", r.code, r.errOut)
	}
	want = []event{{"/v2/enqueue", "R0UT1NG", "resolve", key}}
	if diff := cmp.Diff(want, take()); diff != "" {
		t.Errorf("after recovery (-want +got):\n%s", diff)
	}
}

var sortEvents = cmp.Options{
	cmpopts.SortSlices(func(a, b event) bool { return a.DedupKey < b.DedupKey }),
	cmp.Comparer(func(a, b event) bool { return a == b }),
}

// A saved plan run notifies like a live run, but resolves no source, so it
// never claims a failed source recovered.
func TestNotificationsThroughSavedPlan(t *testing.T) {
	api, take := eventsAPI(t)
	e := newEnv(t)
	notify := []string{"--notify-routing-key", "R0UT1NG", "--notify-url", api.URL + "/v2/enqueue"}
	host, _ := os.Hostname()
	key := "pdsafelist:" + host + ":source_failed"
	cfg := "sets: [hooks]\ncatalog:\n  hooks:\n    direction: ingress\n    ports: [443]\n    urls: [\"https://127.0.0.1:1/list.json\"]\n"
	if err := os.WriteFile(filepath.Join(e.dir, "pdsafelist.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := e.run(append([]string{"sync", "--timeout", "5s"}, notify...)...); r.code != 1 {
		t.Fatalf("failing source: code %d %s", r.code, r.errOut)
	}
	if diff := cmp.Diff([]event{{"/v2/enqueue", "R0UT1NG", "trigger", key}}, take()); diff != "" {
		t.Errorf("failed source (-want +got):\n%s", diff)
	}
	e.config("193.0.2.10")
	planFile := filepath.Join(e.dir, "plan.json")
	if r := e.run("sync", "--plan-out", planFile); r.code != 0 {
		t.Fatal(r.errOut)
	}
	if r := e.run(append([]string{"sync", "--plan", planFile}, notify...)...); r.code != 0 {
		t.Fatalf("saved plan: code %d %s", r.code, r.errOut)
	}
	if diff := cmp.Diff([]event{{"/v2/change/enqueue", "R0UT1NG", "", ""}}, take()); diff != "" {
		t.Errorf("saved plan run (-want +got):\n%s", diff)
	}
	data, err := os.ReadFile(filepath.Join(e.state, "state.json"))
	if err != nil || !strings.Contains(string(data), "source_failed") {
		t.Errorf("open alerts not kept in state (%v):\n%s", err, data)
	}
}

// The notifier trusts what --ca-file adds, as the lists do: behind a
// TLS-inspecting proxy both work or neither does.
func TestNotificationsHonourCAFile(t *testing.T) {
	var mu sync.Mutex
	got := 0
	api := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got++
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	defer api.Close()
	e := newEnv(t)
	ca := filepath.Join(e.dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: api.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	notify := []string{"--notify-routing-key", "R0UT1NG", "--notify-url", api.URL + "/v2/enqueue"}
	e.config("193.0.2.10")
	r := e.run(append([]string{"sync"}, notify...)...)
	if r.code != 0 || !strings.Contains(r.errOut, "notification failed") || got != 0 {
		t.Fatalf("without --ca-file: code %d, %d events, stderr %s", r.code, got, r.errOut)
	}
	e.config("193.0.2.10", "193.0.2.20")
	r = e.run(append([]string{"sync", "--ca-file", ca}, notify...)...)
	if r.code != 0 || strings.Contains(r.errOut, "notification failed") || got != 1 {
		t.Fatalf("with --ca-file: code %d, %d events, stderr %s", r.code, got, r.errOut)
	}
}

// An Events API that never answers costs a run at most notify.timeout for
// all its notifications together, and the sync still succeeds: alerts are
// about the tool, never a reason to hold the lock (issue 20 item 7).
func TestNotificationsBounded(t *testing.T) {
	release := make(chan struct{})
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer api.Close()
	defer close(release)
	e := newEnv(t)
	cfg := "notify: {timeout: 1s}\nsets: [hooks]\ncatalog:\n  hooks:\n    direction: ingress\n    ports: [443]\n    static: [193.0.2.10]\n"
	if err := os.WriteFile(filepath.Join(e.dir, "pdsafelist.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	r := e.run("sync", "--notify-routing-key", "R0UT1NG", "--notify-url", api.URL+"/v2/enqueue")
	took := time.Since(began)
	if r.code != 0 || !strings.Contains(r.errOut, "notification failed") || !strings.Contains(r.errOut, "notify.timeout 1s spent") {
		t.Fatalf("code %d, want 0 with a warning naming notify.timeout\n%s%s", r.code, r.out, r.errOut)
	}
	if took > 3*time.Second {
		t.Errorf("the run took %s with a silent Events API; want notify.timeout (1s) and little more", took)
	}
}

// A routing key never travels in clear text: http is for loopback only.
func TestNotifyURLMustBeHTTPS(t *testing.T) {
	e := newEnv(t)
	e.config("193.0.2.10")
	for url, ok := range map[string]bool{
		"http://events.example/v2/enqueue": false, "http://10.0.0.1/v2/enqueue": false, "http://127.0.0.2:1/v2/enqueue": true,
		"http://[::1]:1/v2/enqueue": true, "https://events.example/v2/enqueue": true,
	} {
		r := e.run("sync", "--dry-run", "--notify-routing-key", "R0UT1NG", "--notify-url", url)
		refused := r.code == 1 && strings.Contains(r.errOut, "notify: url")
		if refused == ok {
			t.Errorf("%s: code %d, refused %v, want refused %v\n%s", url, r.code, refused, !ok, r.errOut)
		}
		if refused && (!strings.Contains(r.errOut, "routing key would travel in clear text") || strings.Count(strings.TrimSpace(r.errOut), "\n") > 0) {
			t.Errorf("%s: want one line saying why: %s", url, r.errOut)
		}
	}
}
