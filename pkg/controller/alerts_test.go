package controller

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pdsafelist/pdsafelist/pkg/config"
	"github.com/pdsafelist/pdsafelist/pkg/notify"
	"github.com/pdsafelist/pdsafelist/pkg/resolution"
	"github.com/pdsafelist/pdsafelist/pkg/source"
	"github.com/pdsafelist/pdsafelist/pkg/state"
)

// A source_failed alert says why each source failed, not only which.
func TestSourceFailedAlertSaysWhy(t *testing.T) {
	var mu sync.Mutex
	var summaries []string
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Payload struct {
				Summary string `json:"summary"`
			} `json:"payload"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		summaries = append(summaries, body.Payload.Summary)
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write([]byte(`{"status":"success"}`))
	}))
	defer api.Close()
	a := &Alerts{Notifier: &notify.Notifier{URL: api.URL + "/v2/enqueue", RoutingKey: "R", Source: "host1", DedupPrefix: "pdsafelist", Client: api.Client()},
		Timeout: 5 * time.Second, Now: time.Now}
	r := &Run{Report: Report{Sets: []resolution.SetResult{{
		Spec: config.SetSpec{Name: "hooks"},
		Sources: []source.Result{
			{Kind: "http", Name: "https://example.test/list.json", Err: errors.New("GET https://example.test/list.json: 503 Service\nUnavailable")},
			{Kind: "dns", Name: "hooks.example.test", Addresses: []source.Address{}},
		},
	}}}}
	a.Observe(context.Background(), &state.File{}, r)
	mu.Lock()
	defer mu.Unlock()
	if len(summaries) != 1 {
		t.Fatalf("%d events, want 1: %q", len(summaries), summaries)
	}
	want := "1 source(s) failed, their sets are frozen: hooks: http https://example.test/list.json: GET https://example.test/list.json: 503 Service; Unavailable"
	if !strings.HasSuffix(summaries[0], want) || strings.Contains(summaries[0], "\n") {
		t.Errorf("summary %q\nwant it to end %q", summaries[0], want)
	}
}
