// Package httplist is the http source: a published list of addresses
// fetched over HTTPS, by default a JSON array of IP or CIDR strings as
// PagerDuty publishes its safelists, or any JSON document picked apart with
// jq, or text with one address per line.
package httplist

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"syscall"
	"time"

	"github.com/pdsafelist/pdsafelist/pkg/cafile"
	"github.com/pdsafelist/pdsafelist/pkg/oneline"
	"github.com/pdsafelist/pdsafelist/pkg/source"
	"github.com/pdsafelist/pdsafelist/pkg/source/listformat"
)

// ClientOptions configure the HTTP client shared by every list.
type ClientOptions struct {
	// CAFile adds PEM certificates to the system pool, which already
	// honours SSL_CERT_FILE and SSL_CERT_DIR.
	CAFile string
	// Timeout bounds a whole request; 0 means 15s.
	Timeout time.Duration
	// MaxRedirects bounds redirects; 0 means 3.
	MaxRedirects int
	// Control runs on each new socket: the tool's self mark.
	Control func(network, address string, c syscall.RawConn) error
	// classify is Classify; tests call a loopback server public.
	classify func(netip.AddrPort) string
}

// NewClient returns a client that always verifies TLS.
func NewClient(o ClientOptions) (*http.Client, error) {
	if o.Timeout <= 0 {
		o.Timeout = 15 * time.Second
	}
	if o.MaxRedirects <= 0 {
		o.MaxRedirects = 3
	}
	// The CA file is read now so a bad --ca-file fails the command before
	// anything is queried; the system pool (about 15 ms) is loaded on the
	// first request, so a run without HTTPS lists never pays for it.
	var extra []byte
	if o.CAFile != "" {
		pem, err := cafile.Read(o.CAFile)
		if err != nil {
			return nil, err
		}
		extra = pem
	}
	if o.classify == nil {
		o.classify = Classify
	}
	guard := &guardTransport{classify: o.classify}
	guard.build = func() (pooled, fresh *http.Transport) {
		pool := cafile.Pool(systemPool, extra)
		pooled = http.DefaultTransport.(*http.Transport).Clone()
		pooled.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		pooled.DialContext = guard.dialer(o.Control).DialContext
		fresh = pooled.Clone()
		fresh.DisableKeepAlives = true
		return pooled, fresh
	}
	max := o.MaxRedirects
	return &http.Client{
		Timeout:   o.Timeout,
		Transport: guard,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > max {
				return fmt.Errorf("more than %d redirects", max)
			}
			// A list fetched in clear text could be swapped on the path.
			if req.URL.Scheme != "https" {
				return fmt.Errorf("redirect to non-HTTPS %s refused", req.URL.Redacted())
			}
			return nil
		},
	}, nil
}

// systemPool is a variable so a test can see when the pool is loaded.
var systemPool = x509.SystemCertPool

// Options configure one list.
type Options struct {
	// MaxBytes caps the body; 0 means 1 MiB.
	MaxBytes int64
	// Parser reads the body; nil reads a JSON array of strings.
	Parser *listformat.Parser
	// Logger gets each fetch at debug; nil logs nothing.
	Logger *slog.Logger
	// Remember configures what the list keeps between runs; its zero
	// value keeps nothing.
	Remember Remember
	// Shared is the run's shared work: lists that ask the same URL the
	// same way send one request. nil shares nothing.
	Shared *source.Shared
}

type list struct {
	url    string
	client *http.Client
	max    int64
	parser *listformat.Parser
	log    *slog.Logger
	rem    Remember
	shared *source.Shared
	group  string // what a request shares with other lists': URL, Accept, size cap
}

// New returns a source for the list at url.
func New(url string, client *http.Client, o Options) source.Source {
	if o.MaxBytes <= 0 {
		o.MaxBytes = 1 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	l := &list{url: url, client: client, max: o.MaxBytes, parser: o.Parser, log: o.Logger, rem: o.Remember.withDefaults(), shared: o.Shared}
	l.group = fmt.Sprintf("http\x00%s\x00%s\x00%d", url, l.parser.Format(), l.max)
	l.shared.Expect(l.group)
	return l
}

func (l *list) Kind() source.Kind { return source.KindHTTP }
func (l *list) Name() string      { return l.url }

// Resolve fetches and validates the list. Every failure is one line that
// names the URL, and a failure never carries addresses.
func (l *list) Resolve(ctx context.Context) source.Result {
	res := source.Result{Kind: source.KindHTTP, Name: l.url}
	if l.rem.Memory != nil {
		return l.resolveRemembering(ctx, res)
	}
	// With nothing remembered no validator is sent, so a 304 is an error.
	a, err := l.fetch(ctx, source.FetchRecord{}, false)
	res.Warnings = a.warnings
	if err != nil {
		res.Err = fmt.Errorf("%s: %s", l.url, oneline.Error(l.timedOut(ctx, err)))
		return res
	}
	res.Addresses = source.Merge(a.addrs)
	return res
}

// answer is one response: a list, or a 304 to the validators sent.
type answer struct {
	addrs                     []source.Address
	notModified               bool
	etag, lastModified, token string
	warnings                  []string
}

// timedOut says which setting ran out when the client's own timeout ended
// the request: the transport's words differ by the phase it caught
// (dial, headers, body), and "context deadline exceeded" names neither
// the cause nor the knob. The run's own deadline keeps its error.
func (l *list) timedOut(ctx context.Context, err error) error {
	var te interface{ Timeout() bool }
	if ctx.Err() == nil && l.client.Timeout > 0 && errors.As(err, &te) && te.Timeout() {
		return fmt.Errorf("no complete answer within %s (http.timeout)", l.client.Timeout)
	}
	return err
}

// fetch asks for the list, conditionally on the validators of last when
// an answer is known. Lists of one run that ask the same URL the same way
// share one request (Options.Shared); each parses the answer itself.
func (l *list) fetch(ctx context.Context, last source.FetchRecord, known bool) (answer, error) {
	var a answer
	conditional := known && (last.ETag != "" || last.LastModified != "")
	var etag, lastModified string
	if conditional {
		etag, lastModified = last.ETag, last.LastModified
	}
	key := l.group + "\x00" + etag + "\x00" + lastModified
	v, ok := l.shared.Do(ctx, l.group, key, func(shared bool) any {
		return l.get(ctx, etag, lastModified, !shared && l.streams())
	})
	if !ok {
		return a, context.Cause(ctx)
	}
	r := v.(response)
	if r.warning != "" {
		a.warnings = append(a.warnings, r.warning)
	}
	if r.err != nil {
		return a, r.err
	}
	if r.status == http.StatusNotModified {
		if !conditional {
			return a, errNotModifiedUnasked
		}
		a.notModified = true
		return a, nil
	}
	a.etag, a.lastModified = r.etag, r.lastModified
	var err error
	if l.rem.Token != "" {
		if a.token, err = changeToken(r.body, l.rem.Token); err != nil {
			return a, err
		}
	}
	if r.streamed {
		a.addrs, err = r.addrs, r.parseErr
	} else {
		a.addrs, err = l.parser.Addresses(ctx, r.body)
	}
	return a, err
}

// streams says the list can be parsed as it arrives when no other list
// reads the same answer: a text list that needs nothing else of the body
// (a change token is read from a JSON body). Holding no body, a large
// list leaves no garbage of its size behind for the union's result to
// grow the heap past.
func (l *list) streams() bool {
	return l.parser.Format() == "text" && l.rem.Token == ""
}

// response is one HTTP answer as every list asking the same way reads it:
// a 304, or a 200 and its body; any other status is err. body is only
// read, never changed, by the lists that share it. A list read as it
// arrived (streamed) has its addresses or parseErr instead of a body.
type response struct {
	status             int
	etag, lastModified string
	body               []byte
	streamed           bool
	addrs              []source.Address
	parseErr           error
	warning            string
	err                error
}

// get sends one request, with the validators given, and reads the answer;
// stream parses a 200's body as it arrives (a text list no other list
// reads).
func (l *list) get(ctx context.Context, etag, lastModified string, stream bool) (r response) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.url, nil)
	if err != nil {
		r.err = err
		return r
	}
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	if lastModified != "" {
		req.Header.Set("If-Modified-Since", lastModified)
	}
	req.Header.Set("User-Agent", "pdsafelist")
	if l.parser.Format() == "text" {
		req.Header.Set("Accept", "text/plain")
	} else {
		req.Header.Set("Accept", "application/json")
	}
	began := time.Now()
	resp, err := l.client.Do(req)
	if resp != nil {
		l.log.Debug("http fetch", "url", l.url, "status", resp.StatusCode, "took", time.Since(began).Round(time.Millisecond))
	} else {
		l.log.Debug("http fetch", "url", l.url, "took", time.Since(began).Round(time.Millisecond), "err", err)
	}
	if err != nil {
		// A refused redirect names both URLs itself.
		var re *RedirectError
		if errors.As(err, &re) {
			r.err = re
			return r
		}
		// Drop the `Get "URL":` wrapper; the URL is already named.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		r.err = err
		return r
	}
	defer resp.Body.Close()
	if w := movedHost(req, resp); w != "" {
		r.warning = w
		l.log.Warn(w)
	}
	r.status = resp.StatusCode
	switch resp.StatusCode {
	case http.StatusNotModified:
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	case http.StatusOK:
		r.etag, r.lastModified = validators(resp.Header)
		if stream {
			r.streamed = true
			r.addrs, r.parseErr, r.err = streamText(resp.Body, l.max)
		} else {
			r.body, r.err = readBody(resp.Body, resp.ContentLength, l.max)
		}
	default:
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		r.err = fmt.Errorf("HTTP %s", resp.Status)
	}
	return r
}

// readBody reads at most max bytes. A length the server announced sizes
// the buffer, so a large list is read once into place instead of into
// growing chunks and a final copy; it is only a hint, bounded by max.
func readBody(r io.Reader, announced, max int64) ([]byte, error) {
	lr := io.LimitReader(r, max+1)
	var body []byte
	var err error
	if announced > 0 && announced <= max {
		// One byte more, so reading to EOF does not grow it.
		body = make([]byte, 0, announced+1)
		for err == nil {
			if len(body) == cap(body) {
				body = append(body, 0)[:len(body)]
			}
			var n int
			n, err = lr.Read(body[len(body):cap(body)])
			body = body[:len(body)+n]
		}
		if err == io.EOF {
			err = nil
		}
	} else {
		body, err = io.ReadAll(lr)
	}
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	if int64(len(body)) > max {
		return nil, fmt.Errorf("response larger than %s", size(max))
	}
	return body, nil
}

// streamText parses a text list as it arrives, failing as readBody and
// then the parser would on the whole body: a body larger than max, or one
// that breaks off, fails with readBody's words (err) even when a line
// before was bad; otherwise a bad line or an empty list is parseErr.
func streamText(body io.Reader, max int64) (addrs []source.Address, parseErr, err error) {
	c := &cappedBody{r: io.LimitReader(body, max+1), max: max}
	addrs, parseErr = listformat.ReadText(c)
	if parseErr != nil && c.err == nil {
		// The rest is read (and dropped) to learn whether the body was too
		// large or broke off, which readBody would have said first.
		_, _ = io.Copy(io.Discard, c)
	}
	if c.err != nil {
		return nil, nil, c.err
	}
	return addrs, parseErr, nil
}

// cappedBody reads a body of at most max bytes (r holds one more to tell);
// past that, or when reading fails, it fails with readBody's words, and
// keeps failing.
type cappedBody struct {
	r      io.Reader
	n, max int64
	err    error
}

func (c *cappedBody) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	switch {
	case c.n > c.max:
		c.err = fmt.Errorf("response larger than %s", size(c.max))
		return 0, c.err
	case err != nil && err != io.EOF:
		c.err = fmt.Errorf("read body: %w", err)
		return n, c.err
	}
	return n, err
}

// Parse validates a list: a JSON array of IP or CIDR strings, not empty.
func Parse(data []byte) ([]netip.Prefix, error) {
	return listformat.JSONArray(data)
}

func size(n int64) string {
	if n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}
