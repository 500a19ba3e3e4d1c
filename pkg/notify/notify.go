// Package notify raises and resolves PagerDuty Events API v2 alerts about
// pdsafelist itself: a failed source, a refused plan, applied changes.
package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"
)

// DefaultURL is PagerDuty's Events API v2 endpoint.
const DefaultURL = "https://events.pagerduty.com/v2/enqueue"

// Kind is a condition with its own stable dedup key.
type Kind string

const (
	ChangesApplied Kind = "changes_applied"
	SourceFailed   Kind = "source_failed"
	GuardRefused   Kind = "guard_refused"
)

// Event is an active condition.
type Event struct {
	Kind     Kind
	Summary  string
	Severity string // critical, error, warning or info
	Details  map[string]any
}

// Notifier sends events for one installation.
type Notifier struct {
	URL        string
	RoutingKey string
	// Source is the host the event is about.
	Source string
	// DedupPrefix scopes dedup keys, e.g. "pdsafelist:prod".
	DedupPrefix string
	Client      *http.Client
	// Backoff between retries; 0 means 500ms. Tests shorten it.
	Backoff time.Duration
}

// maxSummary is the Events API's limit.
const maxSummary = 1024

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

func (n *Notifier) dedup(k Kind) string {
	p := n.DedupPrefix
	if p == "" {
		p = "pdsafelist"
	}
	return p + ":" + string(k)
}

func (n *Notifier) trigger(e Event) map[string]any {
	summary := e.Summary
	if len(summary) > maxSummary {
		summary = summary[:maxSummary-3] + "..."
	}
	source := n.Source
	if source == "" {
		source = "pdsafelist"
	}
	payload := map[string]any{
		"summary": summary, "source": source, "severity": e.Severity,
		"component": "pdsafelist", "group": "firewall-safelist", "class": string(e.Kind),
	}
	if len(e.Details) > 0 {
		payload["custom_details"] = e.Details
	}
	return map[string]any{"routing_key": n.RoutingKey, "event_action": "trigger", "dedup_key": n.dedup(e.Kind), "payload": payload}
}

// send posts one event, retrying throttling and server errors.
func (n *Notifier) send(ctx context.Context, body map[string]any) error {
	data, err := json.Marshal(body)
	if err != nil {
		return err
	}
	url := n.URL
	if url == "" {
		url = DefaultURL
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
			return fmt.Errorf("%s: HTTP %s: %s", url, resp.Status, strings.Join(strings.Fields(string(msg)), " "))
		}
	}
	return last
}
