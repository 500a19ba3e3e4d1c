package notify

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

type recorder struct {
	mu     sync.Mutex
	events []map[string]any
	// statuses are returned in order, then 202.
	statuses []int
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var e map[string]any
	if err := json.NewDecoder(req.Body).Decode(&e); err != nil || req.Header.Get("Content-Type") != "application/json" {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	r.events = append(r.events, e)
	status := http.StatusAccepted
	if len(r.statuses) > 0 {
		status, r.statuses = r.statuses[0], r.statuses[1:]
	}
	w.WriteHeader(status)
	_, _ = w.Write([]byte(`{"status":"success"}`))
}

func setup(t *testing.T, statuses ...int) (*Notifier, *recorder) {
	rec := &recorder{statuses: statuses}
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	return &Notifier{URL: srv.URL, RoutingKey: "R0UTING", Source: "host1", DedupPrefix: "pdsafelist:prod", Client: srv.Client(), Backoff: time.Millisecond}, rec
}

func TestTriggerThenResolve(t *testing.T) {
	n, rec := setup(t)
	open, err := n.Sync(context.Background(), nil, []Event{{Kind: SourceFailed, Severity: "error", Summary: "webhooks list down", Details: map[string]any{"failed_sources": []string{"x"}}}})
	if err != nil || !cmp.Equal(open, []Kind{SourceFailed}) {
		t.Fatalf("open %v err %v", open, err)
	}
	want := map[string]any{
		"routing_key": "R0UTING", "event_action": "trigger", "dedup_key": "pdsafelist:prod:host1:source_failed",
		"payload": map[string]any{"summary": "webhooks list down", "source": "host1", "severity": "error", "component": "pdsafelist",
			"group": "firewall-safelist", "class": "source_failed", "custom_details": map[string]any{"failed_sources": []any{"x"}}},
	}
	if diff := cmp.Diff(want, rec.events[0]); diff != "" {
		t.Errorf("trigger (-want +got):\n%s", diff)
	}
	// Still failing: triggered again under the same key, nothing resolved.
	open, _ = n.Sync(context.Background(), open, []Event{{Kind: SourceFailed, Severity: "error", Summary: "still down"}})
	if len(rec.events) != 2 || rec.events[1]["dedup_key"] != "pdsafelist:prod:host1:source_failed" || !cmp.Equal(open, []Kind{SourceFailed}) {
		t.Fatalf("events %v open %v", rec.events, open)
	}
	// Cleared: resolved once.
	open, err = n.Sync(context.Background(), open, nil)
	if err != nil || len(open) != 0 {
		t.Fatalf("open %v err %v", open, err)
	}
	if diff := cmp.Diff(map[string]any{"routing_key": "R0UTING", "event_action": "resolve", "dedup_key": "pdsafelist:prod:host1:source_failed"}, rec.events[2]); diff != "" {
		t.Errorf("resolve (-want +got):\n%s", diff)
	}
	// Nothing open, nothing active: silence.
	if _, err := n.Sync(context.Background(), nil, nil); err != nil || len(rec.events) != 3 {
		t.Errorf("sent %d events", len(rec.events))
	}
}

func TestRetriesThrottlingAndServerErrors(t *testing.T) {
	n, rec := setup(t, http.StatusTooManyRequests, http.StatusInternalServerError)
	open, err := n.Sync(context.Background(), nil, []Event{{Kind: GuardRefused, Severity: "critical", Summary: "refused"}})
	if err != nil || len(rec.events) != 3 || !cmp.Equal(open, []Kind{GuardRefused}) {
		t.Fatalf("events %d open %v err %v", len(rec.events), open, err)
	}
}

func TestRejectedTriggerIsNotOpen(t *testing.T) {
	n, rec := setup(t, http.StatusBadRequest)
	open, err := n.Sync(context.Background(), nil, []Event{{Kind: SinkFailed, Severity: "error", Summary: "nft rejected the file"}})
	if err == nil || !strings.Contains(err.Error(), "HTTP 400") || strings.Contains(err.Error(), "\n") || len(open) != 0 || len(rec.events) != 1 {
		t.Fatalf("open %v err %v events %d", open, err, len(rec.events))
	}
}

func TestFailedResolveStaysOpen(t *testing.T) {
	n, _ := setup(t, 503, 503, 503)
	open, err := n.Sync(context.Background(), []Kind{SourceFailed}, nil)
	if err == nil || !cmp.Equal(open, []Kind{SourceFailed}) {
		t.Fatalf("open %v err %v", open, err)
	}
}

func TestSummaryTruncated(t *testing.T) {
	n, rec := setup(t)
	_, _ = n.Sync(context.Background(), nil, []Event{{Kind: SourceFailed, Severity: "error", Summary: strings.Repeat("x", 5000)}})
	s := rec.events[0]["payload"].(map[string]any)["summary"].(string)
	if len(s) != 1024 || !strings.HasSuffix(s, "...") {
		t.Errorf("summary length %d", len(s))
	}
}

// A cut must not split a character: the API rejects invalid UTF-8.
func TestSummaryTruncatedOnRuneBoundary(t *testing.T) {
	n, rec := setup(t)
	_, _ = n.Sync(context.Background(), nil, []Event{{Kind: SourceFailed, Severity: "error", Summary: "xy" + strings.Repeat("€", 600)}})
	s := rec.events[0]["payload"].(map[string]any)["summary"].(string)
	if len(s) > 1024 || !utf8.ValidString(s) || !strings.HasSuffix(s, "€...") {
		t.Errorf("summary length %d valid %v, ends %q", len(s), utf8.ValidString(s), s[len(s)-8:])
	}
}

// Two hosts sharing a routing key keep separate incidents, and a long host
// or owner id still yields a key within the API's 255 characters.
func TestDedupKeyPerHostAndBounded(t *testing.T) {
	a := &Notifier{Source: "web-1", DedupPrefix: "pdsafelist:prod"}
	b := &Notifier{Source: "web-2", DedupPrefix: "pdsafelist:prod"}
	if a.dedup(SinkFailed) == b.dedup(SinkFailed) {
		t.Errorf("hosts share dedup key %q", a.dedup(SinkFailed))
	}
	long1 := &Notifier{Source: strings.Repeat("h", 300) + "1", DedupPrefix: "pdsafelist:" + strings.Repeat("ü", 100)}
	long2 := &Notifier{Source: strings.Repeat("h", 300) + "2", DedupPrefix: "pdsafelist:" + strings.Repeat("ü", 100)}
	k1, k2 := long1.dedup(SourceFailed), long2.dedup(SourceFailed)
	if len(k1) > 255 || !utf8.ValidString(k1) || k1 == k2 || k1 != long1.dedup(SourceFailed) {
		t.Errorf("long keys: %d bytes, valid %v, distinct %v", len(k1), utf8.ValidString(k1), k1 != k2)
	}
}

// Applied changes are a change event beside the alert endpoint: no dedup
// key, no incident.
func TestChangeEvent(t *testing.T) {
	var paths []string
	var body map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		paths = append(paths, r.URL.Path)
		_ = json.NewDecoder(r.Body).Decode(&body)
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	n := &Notifier{URL: srv.URL + "/v2/enqueue", RoutingKey: "R0UTING", Source: "host1", Client: srv.Client(), Backoff: time.Millisecond}
	at := time.Date(2026, 11, 26, 3, 0, 0, 0, time.UTC)
	if err := n.ChangeEvent(context.Background(), Change{Summary: "added 2", Time: at, Details: map[string]any{"added": 2}}); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"routing_key": "R0UTING", "payload": map[string]any{
		"summary": "added 2", "source": "host1", "timestamp": "2026-11-26T03:00:00Z", "custom_details": map[string]any{"added": float64(2)}}}
	if diff := cmp.Diff(want, body); diff != "" || !cmp.Equal(paths, []string{"/v2/change/enqueue"}) {
		t.Errorf("paths %v, body (-want +got):\n%s", paths, diff)
	}
}

func TestContextCancelled(t *testing.T) {
	n, _ := setup(t, 503, 503, 503)
	n.Backoff = time.Hour
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := n.Sync(ctx, nil, []Event{{Kind: SourceFailed, Severity: "error", Summary: "x"}}); err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("err %v after %s", err, time.Since(start))
	}
}
