// Package notify tells PagerDuty's Events API v2 about pdsafelist itself:
// alerts (trigger and resolve) for failures, and change events for applied
// changes, which are a normal event rather than an incident.
//
// It is a small client of its own rather than go-pagerduty: that library
// sends each event once, while an alert about a broken firewall must
// survive a 429 or a 5xx, and it would bring the whole REST client along.
package notify

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pdsafelist/pdsafelist/pkg/oneline"
)

// DefaultURL is PagerDuty's Events API v2 endpoint.
const DefaultURL = "https://events.pagerduty.com/v2/enqueue"

// Kind is a condition with its own stable dedup key.
type Kind string

const (
	SourceFailed Kind = "source_failed"
	GuardRefused Kind = "guard_refused"
	// SinkFailed is a sink that cannot be read or applied (AccessDenied,
	// nft rejecting the file): every run fails the same way until a
	// person acts, so it pages.
	SinkFailed Kind = "sink_failed"
)

// Event is an active condition.
type Event struct {
	Kind     Kind
	Summary  string
	Severity string // critical, error, warning or info
	Details  map[string]any
}

// Change is something pdsafelist did, sent as a change event.
type Change struct {
	Summary string
	Details map[string]any
	Time    time.Time
}

// Notifier sends events for one installation.
type Notifier struct {
	// URL is the alert endpoint (.../v2/enqueue); change events go to
	// .../v2/change/enqueue beside it.
	URL        string
	RoutingKey string
	// Source is the host the event is about; it is part of every dedup
	// key, so one host never resolves another's incident.
	Source string
	// DedupPrefix scopes dedup keys, e.g. "pdsafelist:prod".
	DedupPrefix string
	Client      *http.Client
	// Backoff between retries; 0 means 500ms. Tests shorten it.
	Backoff time.Duration
}

// The Events API's limits.
const (
	maxSummary = 1024
	maxDedup   = 255
)

// Sync triggers every active event and resolves every kind that was open
// but is no longer active. It returns the kinds open afterwards, for the
// caller to keep until the next run. A kind whose trigger failed is not
// recorded as open; a kind whose resolve failed stays open and is retried.
func (n *Notifier) Sync(ctx context.Context, open []Kind, active []Event) ([]Kind, error) {
	var nowOpen []Kind
	var errs []error
	activeKinds := map[Kind]bool{}
	for _, e := range active {
		activeKinds[e.Kind] = true
		if err := n.send(ctx, n.trigger(e)); err != nil {
			errs = append(errs, fmt.Errorf("trigger %s: %w", e.Kind, err))
			if slices.Contains(open, e.Kind) {
				nowOpen = append(nowOpen, e.Kind)
			}
			continue
		}
		nowOpen = append(nowOpen, e.Kind)
	}
	for _, k := range open {
		if activeKinds[k] {
			continue
		}
		if err := n.send(ctx, map[string]any{"routing_key": n.RoutingKey, "event_action": "resolve", "dedup_key": n.dedup(k)}); err != nil {
			errs = append(errs, fmt.Errorf("resolve %s: %w", k, err))
			nowOpen = append(nowOpen, k)
		}
	}
	slices.Sort(nowOpen)
	return slices.Compact(nowOpen), errors.Join(errs...)
}

// dedup is prefix:host:kind. A key over the API's 255 characters (a long
// owner id or host name) keeps its start and ends in a hash of the whole,
// so it stays unique and stable.
func (n *Notifier) dedup(k Kind) string {
	p := n.DedupPrefix
	if p == "" {
		p = "pdsafelist"
	}
	key := p + ":" + n.source() + ":" + string(k)
	if len(key) <= maxDedup {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	tail := "~" + hex.EncodeToString(sum[:8])
	return truncate(key, maxDedup-len(tail), "") + tail
}

func (n *Notifier) source() string {
	if n.Source == "" {
		return "pdsafelist"
	}
	return n.Source
}

// truncate cuts s to at most max bytes on a rune boundary, ending in
// ellipsis when it cut.
func truncate(s string, max int, ellipsis string) string {
	if len(s) <= max {
		return s
	}
	cut := max - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}

func (n *Notifier) trigger(e Event) map[string]any {
	summary := truncate(e.Summary, maxSummary, "...")
	source := n.source()
	payload := map[string]any{
		"summary": summary, "source": source, "severity": e.Severity,
		"component": "pdsafelist", "group": "firewall-safelist", "class": string(e.Kind),
	}
	if len(e.Details) > 0 {
		payload["custom_details"] = e.Details
	}
	return map[string]any{"routing_key": n.RoutingKey, "event_action": "trigger", "dedup_key": n.dedup(e.Kind), "payload": payload}
}

// ChangeEvent sends c to the Change Events API. Change events have no
// dedup key and open no incident.
func (n *Notifier) ChangeEvent(ctx context.Context, c Change) error {
	payload := map[string]any{"summary": truncate(c.Summary, maxSummary, "..."), "source": n.source()}
	if !c.Time.IsZero() {
		payload["timestamp"] = c.Time.UTC().Format(time.RFC3339)
	}
	if len(c.Details) > 0 {
		payload["custom_details"] = c.Details
	}
	body := map[string]any{"routing_key": n.RoutingKey, "payload": payload}
	if err := n.post(ctx, n.changeURL(), body); err != nil {
		return fmt.Errorf("change event: %w", err)
	}
	return nil
}

func (n *Notifier) alertURL() string {
	if n.URL == "" {
		return DefaultURL
	}
	return n.URL
}

// changeURL sits beside the alert endpoint, so a stand-in or proxy given
// with --notify-url serves both.
func (n *Notifier) changeURL() string {
	u := n.alertURL()
	if base, ok := strings.CutSuffix(u, "/v2/enqueue"); ok {
		return base + "/v2/change/enqueue"
	}
	return strings.TrimRight(u, "/") + "/v2/change/enqueue"
}

func (n *Notifier) send(ctx context.Context, body map[string]any) error {
	return n.post(ctx, n.alertURL(), body)
}

// post sends one event, retrying throttling and server errors.
func (n *Notifier) post(ctx context.Context, url string, body map[string]any) error {
	data, err := json.Marshal(body)
	if err != nil {
		return err
	}
	client := n.Client
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	backoff := n.Backoff
	if backoff <= 0 {
		backoff = 500 * time.Millisecond
	}
	var last error
	for attempt := range 3 {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(backoff << (attempt - 1)):
			}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(data))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			last = err
			if ctx.Err() != nil {
				return ctx.Err()
			}
			continue
		}
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusAccepted || resp.StatusCode == http.StatusOK:
			return nil
		case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
			last = fmt.Errorf("%s: HTTP %s", url, resp.Status)
		default:
			return fmt.Errorf("%s: HTTP %s: %s", url, resp.Status, oneline.String(string(msg)))
		}
	}
	return last
}
