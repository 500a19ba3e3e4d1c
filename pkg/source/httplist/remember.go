package httplist

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"time"

	"github.com/pdsafelist/pdsafelist/pkg/oneline"
	"github.com/pdsafelist/pdsafelist/pkg/source"
)

// Fetching are the keys of every published list (http and vendor
// sources) about when and how to ask for it again.
type Fetching struct {
	// MinInterval is how long the last good answer is reused without a
	// request, for a fleet of hosts on a one-minute timer.
	MinInterval time.Duration `yaml:"min_interval"`
	// BackoffAfter is how many failures in a row start the back-off.
	BackoffAfter int `yaml:"backoff_after"`
	// MaxBackoff caps the doubling wait between attempts.
	MaxBackoff time.Duration `yaml:"max_backoff"`
	// Token is a top-level key of a JSON list that never goes backwards
	// (syncToken, createDate, changeNumber, version).
	Token string `yaml:"token"`
}

// Defaults of Fetching, written once here for the docs and the code.
const (
	DefaultBackoffAfter = 3
	DefaultMaxBackoff   = time.Hour
	// minBackoff is the first wait when min_interval is shorter.
	minBackoff = time.Minute
)

// DefaultFetching is Fetching with the defaults a zero value stands for.
func DefaultFetching() Fetching {
	return Fetching{BackoffAfter: DefaultBackoffAfter, MaxBackoff: DefaultMaxBackoff}
}

var tokenKeyRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)

// Check refuses values that cannot be meant.
func (f Fetching) Check() error {
	switch {
	case f.MinInterval < 0:
		return fmt.Errorf("min_interval %s is negative", f.MinInterval)
	case f.BackoffAfter < 0:
		return fmt.Errorf("backoff_after %d is negative", f.BackoffAfter)
	case f.MaxBackoff < 0:
		return fmt.Errorf("max_backoff %s is negative", f.MaxBackoff)
	case f.Token != "" && !tokenKeyRE.MatchString(f.Token):
		return fmt.Errorf("token %q: want a top-level key of the JSON list, such as syncToken", oneline.String(f.Token))
	}
	return nil
}

// Remember is what a list keeps between runs and how it uses it.
type Remember struct {
	Fetching
	// Memory keeps the records; nil keeps nothing.
	Memory source.FetchMemory
	// Key names the list in Memory (Key); empty is the URL.
	Key string
	Now func() time.Time
}

func (r Remember) withDefaults() Remember {
	if r.BackoffAfter == 0 {
		r.BackoffAfter = DefaultBackoffAfter
	}
	if r.MaxBackoff == 0 {
		r.MaxBackoff = DefaultMaxBackoff
	}
	if r.Now == nil {
		r.Now = time.Now
	}
	return r
}

// backoff is the wait after failures in a row (at least BackoffAfter):
// max(min_interval, 1m), doubled for each failure past BackoffAfter,
// capped at MaxBackoff.
func (r Remember) backoff(failures int) time.Duration {
	wait := max(r.MinInterval, minBackoff)
	for i := r.BackoffAfter; i < failures && wait < r.MaxBackoff; i++ {
		wait *= 2
	}
	return min(wait, r.MaxBackoff)
}

// Key names a list in the memory: its URL, and how it is read when that
// is not the plain JSON array, so two filters of one document (AWS's EC2
// and S3) keep an answer each.
func Key(url, format, jq string) string {
	if (format == "" || format == "json") && jq == "" {
		return url
	}
	if format == "" {
		format = "json"
	}
	sum := sha256.Sum256([]byte(jq))
	return url + " " + format + " " + hex.EncodeToString(sum[:8])
}

var errNotModifiedUnasked = errors.New("HTTP 304 Not Modified to a request that asked for no validator: no remembered answer to reuse")

// TokenError is an answer older than the last one, by its change token.
type TokenError struct {
	Key, Last, Got string
}

func (e *TokenError) Error() string {
	return fmt.Sprintf("change token %s went back from %q to %q: an older list (a stale mirror or cache?); the set stays as it was", e.Key, e.Last, e.Got)
}

// resolveRemembering is Resolve with a memory: the back-off and
// min_interval decide whether to ask at all; a 304 reuses the answer its
// validators described, and a token that went back fails the list.
func (l *list) resolveRemembering(ctx context.Context, res source.Result) source.Result {
	key := l.rem.Key
	if key == "" {
		key = l.url
	}
	now := l.rem.Now()
	last, _ := l.rem.Memory.Recall(key)
	// A time in the future (a clock that jumped back, an edited file)
	// would pin the back-off or the reuse for as long as it is far.
	last.FailedAt, last.Answered = earliest(last.FailedAt, now), earliest(last.Answered, now)
	if last.Failures >= l.rem.BackoffAfter {
		if next := last.FailedAt.Add(l.rem.backoff(last.Failures)); now.Before(next) {
			l.log.Warn("list not fetched: backing off", "url", l.url, "failures", last.Failures, "next_attempt", next.UTC().Format(time.RFC3339))
			res.Err = fmt.Errorf("%s: not fetched: backing off after %d failures in a row, next attempt after %s; the set stays as it was",
				l.url, last.Failures, next.UTC().Format(time.RFC3339))
			return res
		}
	}
	if last.Answer != nil && last.Failures == 0 && l.rem.MinInterval > 0 && now.Sub(last.Answered) < l.rem.MinInterval {
		l.log.Debug("list reused within min_interval", "url", l.url, "answered", last.Answered.UTC().Format(time.RFC3339), "min_interval", l.rem.MinInterval)
		res.Addresses = addresses(last)
		return res
	}
	// The unpacked answer is let go while the list is fetched and parsed
	// (every list of a run at once, 3 MB each at 100,000 prefixes), and
	// recalled only when it is kept or reused.
	known := last.Answer != nil
	last.Answer = nil
	recall := func() {
		if last.Answer == nil {
			again, _ := l.rem.Memory.Recall(key)
			last.Answer = again.Answer
		}
	}
	a, err := l.fetch(ctx, last, known)
	res.Warnings = a.warnings
	if err == nil && !a.notModified && known && last.Token != "" && a.token != "" && compareTokens(a.token, last.Token) < 0 {
		err = &TokenError{Key: l.rem.Token, Last: last.Token, Got: a.token}
	}
	if err == nil && a.notModified {
		// A 304 reuses the answer; one gone since is no empty list.
		if recall(); last.Answer == nil {
			err = errNotModifiedUnasked
		}
	}
	if err != nil {
		// Only a failure the run did not cause counts towards the
		// back-off: the run's own deadline or a signal is not the list's.
		if ctx.Err() == nil {
			recall()
			last.Failures++
			last.FailedAt = now
			l.rem.Memory.Remember(key, last)
		}
		res.Err = fmt.Errorf("%s: %s", l.url, oneline.Error(l.timedOut(ctx, err)))
		return res
	}
	if a.notModified {
		l.log.Debug("list not modified", "url", l.url)
		last.Answered, last.Failures, last.FailedAt = now, 0, time.Time{}
		l.rem.Memory.Remember(key, last)
		res.Addresses = addresses(last)
		return res
	}
	res.Addresses = source.Merge(a.addrs)
	rec := source.FetchRecord{ETag: a.etag, LastModified: a.lastModified, Token: a.token, Answered: now,
		Answer: make([]netip.Prefix, len(res.Addresses))}
	for i, ad := range res.Addresses {
		rec.Answer[i] = ad.Prefix
	}
	l.rem.Memory.Remember(key, rec)
	return res
}

func addresses(r source.FetchRecord) []source.Address {
	out := make([]source.Address, len(r.Answer))
	for i, p := range r.Answer {
		out[i] = source.Address{Prefix: p}
	}
	return source.Merge(out)
}

func earliest(t, now time.Time) time.Time {
	if t.After(now) {
		return now
	}
	return t
}

// Validators a header value may carry into the memory and back into a
// request: short and printable, so a hostile server cannot grow the state
// or smuggle anything into the next request's headers.
const maxValidator = 256

// validators are the response's ETag and Last-Modified, each dropped
// when it is not one a later request can safely send.
func validators(h http.Header) (etag, lastModified string) {
	etag = h.Get("ETag")
	if !printableHeader(etag) {
		etag = ""
	}
	if lm := h.Get("Last-Modified"); lm != "" {
		if t, err := http.ParseTime(lm); err == nil {
			lastModified = t.UTC().Format(http.TimeFormat)
		}
	}
	return etag, lastModified
}

func printableHeader(s string) bool {
	if len(s) > maxValidator {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// maxToken bounds a change token: vendors' are a number or a date.
const maxToken = 64

// changeToken reads the top-level key of a JSON object: a string or a
// number, as written. A body that is not an object, or lacks the key, has
// no token (the parser words what is wrong with the list itself). The
// object is read key by key and the read stops at the token, which
// vendors write first: the prefixes after it are not read twice.
func changeToken(body []byte, key string) (string, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return "", nil
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return "", nil
		}
		if k, _ := t.(string); k != key {
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return "", nil
			}
			continue
		}
		var v any
		if err := dec.Decode(&v); err != nil {
			return "", nil
		}
		var tok string
		switch v := v.(type) {
		case string:
			tok = v
		case json.Number:
			tok = v.String()
		default:
			return "", fmt.Errorf("change token %s: want a string or a number, got %s", key, clip(fmt.Sprint(v)))
		}
		if tok == "" || len(tok) > maxToken || !printableHeader(tok) {
			return "", fmt.Errorf("change token %s %q: want a short printable string or number", key, clip(tok))
		}
		return tok, nil
	}
	return "", nil
}

func clip(s string) string {
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return oneline.String(s)
}

// compareTokens orders two tokens: as integers when both are (syncToken,
// version, changeNumber), else as strings, which orders the fixed-width
// dates vendors publish (createDate, last_updated_timestamp).
func compareTokens(a, b string) int {
	if isDigits(a) && isDigits(b) {
		a, b = strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
		if len(a) != len(b) {
			if len(a) < len(b) {
				return -1
			}
			return 1
		}
	}
	return strings.Compare(a, b)
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// movedHost is the warning for a list answered from another host than
// its URL's, naming both: a moved list is noticed before the old host
// stops answering or starts answering with something else.
func movedHost(req *http.Request, resp *http.Response) string {
	if resp.Request == nil || resp.Request.URL == nil {
		return ""
	}
	from, to := req.URL.Hostname(), resp.Request.URL.Hostname()
	if strings.EqualFold(from, to) {
		return ""
	}
	return fmt.Sprintf("list %s was redirected from host %s to host %s (%s): it may have moved; update the url", req.URL.Redacted(), from, to, resp.Request.URL.Redacted())
}
