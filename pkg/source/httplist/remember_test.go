package httplist

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pdsafelist/pdsafelist/pkg/source"
	"github.com/pdsafelist/pdsafelist/pkg/source/listformat"
	"github.com/pdsafelist/pdsafelist/pkg/state"
)

// origin is a stand-in for a vendor's list host: it serves body with an
// ETag and a Last-Modified, answers a matching conditional request with
// 304, and counts requests.
type origin struct {
	mu       sync.Mutex
	body     string
	etag     string
	status   int // when set, every request gets it
	always   int // when set, every request gets it even without validators
	requests atomic.Int64
	lastReq  http.Header
}

var lastModified = time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)

func (o *origin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o.requests.Add(1)
	o.mu.Lock()
	defer o.mu.Unlock()
	o.lastReq = r.Header.Clone()
	if o.always != 0 {
		w.WriteHeader(o.always)
		return
	}
	if o.status != 0 {
		http.Error(w, "down", o.status)
		return
	}
	w.Header().Set("ETag", o.etag)
	w.Header().Set("Last-Modified", lastModified.Format(http.TimeFormat))
	if r.Header.Get("If-None-Match") == o.etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	_, _ = w.Write([]byte(o.body))
}

func (o *origin) set(f func(o *origin)) {
	o.mu.Lock()
	defer o.mu.Unlock()
	f(o)
}

// fakeClock is the run's clock, moved by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time { return c.t }

func rememberingList(t *testing.T, o *origin, fetching Fetching, mem source.FetchMemory, clock *fakeClock, parser *listformat.Parser) (source.Source, string) {
	t.Helper()
	srv, client := server(t, map[string]http.HandlerFunc{"/list": o.ServeHTTP})
	u := srv.URL + "/list"
	return New(u, client, Options{Parser: parser, Remember: Remember{Fetching: fetching, Memory: mem, Now: clock.Now}}), u
}

func prefixesOf(r source.Result) string {
	var b []string
	for _, a := range r.Addresses {
		b = append(b, a.Prefix.String())
	}
	return strings.Join(b, " ")
}

// A list remembers its validators and answer; the next run asks with
// If-None-Match and If-Modified-Since, and a 304 reuses the answer. A
// changed list is fetched and read as before. A text list, parsed as it
// arrives, remembers the same.
func TestConditionalFetch(t *testing.T) {
	text, err := listformat.New("text", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Run("json", func(t *testing.T) {
		conditionalFetch(t, nil, `["193.0.2.1", "198.51.100.0/24"]`, `["203.0.113.7"]`)
	})
	t.Run("text", func(t *testing.T) {
		conditionalFetch(t, text, "198.51.100.0/24\n193.0.2.1\n", "# v2\n203.0.113.7\n")
	})
}

func conditionalFetch(t *testing.T, parser *listformat.Parser, v1, v2 string) {
	o := &origin{body: v1, etag: `"v1"`}
	mem := state.NewFetches()
	clock := &fakeClock{t: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)}
	l, u := rememberingList(t, o, Fetching{}, mem, clock, parser)
	ctx := context.Background()
	r := l.Resolve(ctx)
	if r.Err != nil || prefixesOf(r) != "193.0.2.1/32 198.51.100.0/24" {
		t.Fatalf("first run: %q, %v", prefixesOf(r), r.Err)
	}
	if o.lastReq.Get("If-None-Match") != "" || o.lastReq.Get("If-Modified-Since") != "" {
		t.Errorf("first request was conditional: %v", o.lastReq)
	}
	// The origin now answers anything but a 304 with garbage: only the
	// remembered answer can give the same list.
	o.set(func(o *origin) { o.body = `garbage` })
	clock.t = clock.t.Add(time.Minute)
	r = l.Resolve(ctx)
	if r.Err != nil || prefixesOf(r) != "193.0.2.1/32 198.51.100.0/24" {
		t.Fatalf("after 304: %q, %v", prefixesOf(r), r.Err)
	}
	if got := o.lastReq.Get("If-None-Match"); got != `"v1"` {
		t.Errorf("If-None-Match %q, want \"v1\"", got)
	}
	if got := o.lastReq.Get("If-Modified-Since"); got != lastModified.Format(http.TimeFormat) {
		t.Errorf("If-Modified-Since %q", got)
	}
	if n := o.requests.Load(); n != 2 {
		t.Errorf("%d requests, want 2", n)
	}
	o.set(func(o *origin) { o.body, o.etag = v2, `"v2"` })
	r = l.Resolve(ctx)
	if r.Err != nil || prefixesOf(r) != "203.0.113.7/32" {
		t.Fatalf("changed list: %q, %v", prefixesOf(r), r.Err)
	}
	if rec, _ := mem.Recall(u); rec.ETag != `"v2"` || len(rec.Answer) != 1 {
		t.Errorf("memory after change: %+v", rec)
	}
}

// A 304 for a list with no remembered answer is a failure, never an
// empty list: there is nothing it could mean.
func TestNotModifiedWithoutAnswerFails(t *testing.T) {
	for _, remembering := range []bool{true, false} {
		t.Run(fmt.Sprint("memory=", remembering), func(t *testing.T) {
			o := &origin{always: http.StatusNotModified}
			var mem source.FetchMemory
			if remembering {
				mem = state.NewFetches()
			}
			l, u := rememberingList(t, o, Fetching{}, mem, &fakeClock{t: time.Now()}, nil)
			r := l.Resolve(context.Background())
			if r.Err == nil || !strings.Contains(r.Err.Error(), "304") || !strings.HasPrefix(r.Err.Error(), u+": ") || len(r.Addresses) != 0 {
				t.Fatalf("304 with nothing remembered: %v, %d addresses", r.Err, len(r.Addresses))
			}
		})
	}
}

// Inside min_interval a run reuses the last answer without a request;
// after it, the list is asked for again.
func TestMinInterval(t *testing.T) {
	o := &origin{body: `["193.0.2.1"]`, etag: `"v1"`}
	clock := &fakeClock{t: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)}
	l, _ := rememberingList(t, o, Fetching{MinInterval: time.Hour}, state.NewFetches(), clock, nil)
	for i := range 30 {
		r := l.Resolve(context.Background())
		if r.Err != nil || prefixesOf(r) != "193.0.2.1/32" {
			t.Fatalf("run %d: %q, %v", i, prefixesOf(r), r.Err)
		}
		clock.t = clock.t.Add(time.Minute)
	}
	if n := o.requests.Load(); n != 1 {
		t.Fatalf("%d requests in 30 minutes with min_interval 1h, want 1", n)
	}
	clock.t = clock.t.Add(30 * time.Minute)
	if r := l.Resolve(context.Background()); r.Err != nil {
		t.Fatal(r.Err)
	}
	if n := o.requests.Load(); n != 2 {
		t.Fatalf("%d requests after the interval, want 2", n)
	}
}

// After backoff_after failures in a row a list is not asked for until a
// wait that doubles with each further failure, capped; each skipped run
// fails the list (the set freezes), names it and never yields addresses.
func TestBackoff(t *testing.T) {
	o := &origin{body: `["193.0.2.1"]`, etag: `"v1"`}
	clock := &fakeClock{t: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)}
	l, u := rememberingList(t, o, Fetching{BackoffAfter: 3, MaxBackoff: 4 * time.Minute}, state.NewFetches(), clock, nil)
	ctx := context.Background()
	if r := l.Resolve(ctx); r.Err != nil {
		t.Fatal(r.Err)
	}
	o.set(func(o *origin) { o.status = http.StatusServiceUnavailable })
	// Each step: minutes to wait before the run, whether it asks.
	steps := []struct {
		wait int
		asks bool
	}{
		{1, true}, {0, true}, {0, true}, // three failures: back-off starts, 1m
		{0, false}, {1, true}, // 4th failure: 2m
		{1, false}, {1, true}, // 5th: 4m
		{3, false}, {1, true}, // 6th: capped at 4m
		{3, false}, {1, true},
	}
	want := o.requests.Load()
	for i, s := range steps {
		clock.t = clock.t.Add(time.Duration(s.wait) * time.Minute)
		r := l.Resolve(ctx)
		if s.asks {
			want++
		}
		if n := o.requests.Load(); n != want {
			t.Fatalf("step %d: %d requests, want %d", i, n, want)
		}
		if r.Err == nil || len(r.Addresses) != 0 || !strings.HasPrefix(r.Err.Error(), u+": ") {
			t.Fatalf("step %d: %v with %d addresses", i, r.Err, len(r.Addresses))
		}
		if skipped := strings.Contains(r.Err.Error(), "backing off"); skipped == s.asks {
			t.Fatalf("step %d: asks=%v but error %q", i, s.asks, r.Err)
		}
	}
	// Recovery resets the count.
	o.set(func(o *origin) { o.status = 0 })
	clock.t = clock.t.Add(5 * time.Minute)
	if r := l.Resolve(ctx); r.Err != nil {
		t.Fatal(r.Err)
	}
	o.set(func(o *origin) { o.status = http.StatusServiceUnavailable })
	if r := l.Resolve(ctx); r.Err == nil || strings.Contains(r.Err.Error(), "backing off") {
		t.Fatalf("first failure after recovery: %v", r.Err)
	}
}

// An answer whose change token goes backwards (an older list from a stale
// mirror or cache) fails, naming the list; the memory keeps the newer one.
func TestChangeTokenBackwards(t *testing.T) {
	doc := func(token string, ip string) string {
		return fmt.Sprintf(`{"syncToken": %s, "prefixes": [{"ip_prefix": %q}]}`, token, ip)
	}
	const jq = ".prefixes[].ip_prefix"
	p, err := listformat.New("json", jq)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, newer, older string }{
		{"string", `"1764115200"`, `"999999999"`},
		{"number", `67`, `9`},
		{"date", `"2026-11-26-00-00-00"`, `"2026-11-25-23-59-59"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := &origin{body: doc(tt.newer, "193.0.2.1"), etag: `"a"`}
			mem := state.NewFetches()
			l, u := rememberingList(t, o, Fetching{Token: "syncToken"}, mem, &fakeClock{t: time.Now()}, p)
			if r := l.Resolve(context.Background()); r.Err != nil {
				t.Fatal(r.Err)
			}
			o.set(func(o *origin) { o.body, o.etag = doc(tt.older, "198.51.100.9"), `"b"` })
			r := l.Resolve(context.Background())
			if r.Err == nil || !strings.Contains(r.Err.Error(), "went back") || !strings.HasPrefix(r.Err.Error(), u+": ") || len(r.Addresses) != 0 {
				t.Fatalf("older list: %v, %d addresses", r.Err, len(r.Addresses))
			}
			rec, _ := mem.Recall(u)
			if rec.ETag != `"a"` || len(rec.Answer) != 1 || rec.Answer[0].String() != "193.0.2.1/32" {
				t.Errorf("memory after an older list: %+v", rec)
			}
			// The same token again is no change, not a step back.
			o.set(func(o *origin) { o.body, o.etag = doc(tt.newer, "193.0.2.1"), `"c"` })
			if r := l.Resolve(context.Background()); r.Err != nil {
				t.Fatal(r.Err)
			}
		})
	}
}

func TestCompareTokens(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want int
	}{
		{"9", "10", -1}, {"0010", "9", 1}, {"1764115200", "1764115200", 0},
		{"2026-11-26-00-00-00", "2026-11-25-00-00-00", 1}, {"2026-01-01T00:00:00.1", "2026-01-01T00:00:00.2", -1},
	} {
		if got := compareTokens(tt.a, tt.b); got != tt.want {
			t.Errorf("compareTokens(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

// Validators a hostile server sends are kept only when a later request
// can carry them safely.
func TestValidatorsBounded(t *testing.T) {
	h := http.Header{}
	h.Set("ETag", strings.Repeat("x", maxValidator+1))
	h.Set("Last-Modified", "yesterday")
	if e, lm := validators(h); e != "" || lm != "" {
		t.Errorf("kept %q, %q", e, lm)
	}
	h.Set("ETag", `W/"abc"`)
	h.Set("Last-Modified", "Thu, 26 Nov 2026 00:00:00 GMT")
	if e, lm := validators(h); e != `W/"abc"` || lm != "Thu, 26 Nov 2026 00:00:00 GMT" {
		t.Errorf("dropped %q, %q", e, lm)
	}
}

// anyHostClient reaches srv whatever host a URL names, trusting its
// certificate (valid for *.example.com), so a test can use real-looking
// hosts.
func anyHostClient(t *testing.T, srv *httptest.Server) *http.Client {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	addr := srv.Listener.Addr().String()
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}
}

// A list that answers with a redirect to another host is read, with a
// warning naming both hosts; a redirect on the same host says nothing.
func TestRedirectToAnotherHostWarns(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Host + r.URL.Path {
		case "lists.example.com/old":
			http.Redirect(w, r, "https://new.example.com/list", http.StatusMovedPermanently)
		case "lists.example.com/here":
			http.Redirect(w, r, "/list", http.StatusFound)
		default:
			_, _ = w.Write([]byte(`["193.0.2.1"]`))
		}
	}))
	t.Cleanup(srv.Close)
	client := anyHostClient(t, srv)
	r := New("https://lists.example.com/old", client, Options{}).Resolve(context.Background())
	if r.Err != nil || len(r.Warnings) != 1 {
		t.Fatalf("err %v, warnings %q", r.Err, r.Warnings)
	}
	if w := r.Warnings[0]; !strings.Contains(w, "lists.example.com") || !strings.Contains(w, "new.example.com") {
		t.Errorf("warning %q does not name both hosts", w)
	}
	r = New("https://lists.example.com/here", client, Options{}).Resolve(context.Background())
	if r.Err != nil || len(r.Warnings) != 0 {
		t.Fatalf("same-host redirect: err %v, warnings %q", r.Err, r.Warnings)
	}
}

// A server that sends only Last-Modified (no ETag) is asked with
// If-Modified-Since, and its 304 reuses the answer too.
func TestConditionalFetchLastModifiedOnly(t *testing.T) {
	var requests, notModified atomic.Int64
	srv, client := server(t, map[string]http.HandlerFunc{"/list": func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		if r.Header.Get("If-None-Match") != "" {
			t.Errorf("If-None-Match sent without an ETag: %q", r.Header.Get("If-None-Match"))
		}
		rec := &statusRecorder{ResponseWriter: w}
		http.ServeContent(rec, r, "list.json", lastModified, strings.NewReader(`["193.0.2.1"]`))
		if rec.status == http.StatusNotModified {
			notModified.Add(1)
		}
	}})
	clock := &fakeClock{t: time.Now()}
	l := New(srv.URL+"/list", client, Options{Remember: Remember{Memory: state.NewFetches(), Now: clock.Now}})
	for i := range 3 {
		if r := l.Resolve(context.Background()); r.Err != nil || prefixesOf(r) != "193.0.2.1/32" {
			t.Fatalf("run %d: %q, %v", i, prefixesOf(r), r.Err)
		}
	}
	if requests.Load() != 3 || notModified.Load() != 2 {
		t.Fatalf("%d requests, %d answered 304; want 3 and 2", requests.Load(), notModified.Load())
	}
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// The docs' option table shows Factory.Options(); it must be what a list
// with none of the keys set really uses (it showed no defaults before).
func TestOptionsShowTheDefaultsInUse(t *testing.T) {
	shown := Factory.Options().(Spec).Fetching
	used := Remember{}.withDefaults().Fetching
	if shown != used {
		t.Errorf("Factory.Options() shows %+v, a spec without the keys uses %+v", shown, used)
	}
}
