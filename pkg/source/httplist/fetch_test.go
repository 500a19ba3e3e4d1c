package httplist

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/pdsafelist/pdsafelist/pkg/source/listformat"
)

// server serves path -> handler over TLS and returns a client trusting it
// through a CA file, as --ca-file does.
func server(t *testing.T, routes map[string]http.HandlerFunc) (*httptest.Server, *http.Client) {
	t.Helper()
	mux := http.NewServeMux()
	for p, h := range routes {
		mux.HandleFunc(p, h)
	}
	srv := httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(ca, pemBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	client, err := NewClient(ClientOptions{CAFile: ca, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return srv, client
}

func body(s string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(s)) }
}

func TestResolve(t *testing.T) {
	webhooks, err := os.ReadFile("testdata/webhooks-us-service-region.json")
	if err != nil {
		t.Fatal(err)
	}
	srv, client := server(t, map[string]http.HandlerFunc{
		"/webhooks": body(string(webhooks)),
		"/mixed":    body(`["193.0.2.1", "198.52.100.0/24", "2001:db9::1", "193.0.2.1", " 203.1.113.5 "]`),
		"/moved":    func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/mixed", http.StatusFound) },
	})
	r := New(srv.URL+"/webhooks", client, Options{}).Resolve(context.Background())
	if r.Err != nil || len(r.Addresses) != 16 {
		t.Fatalf("webhooks: %d addresses, err %v", len(r.Addresses), r.Err)
	}
	for _, path := range []string{"/mixed", "/moved"} {
		r := New(srv.URL+path, client, Options{}).Resolve(context.Background())
		if r.Err != nil {
			t.Fatalf("%s: %v", path, r.Err)
		}
		var got []netip.Prefix
		for _, a := range r.Addresses {
			got = append(got, a.Prefix)
		}
		want := []netip.Prefix{netip.MustParsePrefix("193.0.2.1/32"), netip.MustParsePrefix("198.52.100.0/24"), netip.MustParsePrefix("203.1.113.5/32"), netip.MustParsePrefix("2001:db9::1/128")}
		if diff := cmp.Diff(want, got, cmpopts.EquateComparable(netip.Prefix{})); diff != "" {
			t.Errorf("%s (-want +got):\n%s", path, diff)
		}
		if r.Kind != "http" || r.Name != srv.URL+path {
			t.Errorf("kind %q name %q", r.Kind, r.Name)
		}
	}
}

// Every failure is one line naming the URL, and never carries addresses.
func TestFailures(t *testing.T) {
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(`["193.0.2.1"]`)) }))
	t.Cleanup(plain.Close)
	srv, client := server(t, map[string]http.HandlerFunc{
		"/404":      http.NotFound,
		"/503":      func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "down\nfor maintenance", 503) },
		"/html":     body("<html>\n<body>hello</body></html>"),
		"/object":   body(`{"ips": ["193.0.2.1"]}`),
		"/number":   body(`["193.0.2.1", 42]`),
		"/bad":      body(`["193.0.2.1", "foo\nbar"]`),
		"/zone":     body(`["fe80::1%eth0"]`),
		"/hostbits": body(`["193.0.2.1", "44.242.69.192/24"]`),
		"/empty":    body(`[]`),
		"/null":     body(`null`),
		"/huge":     body("[" + strings.Repeat(`"193.0.2.1",`, 200_000) + `"193.0.2.1"]`),
		"/slow": func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(3 * time.Second)
			_, _ = w.Write([]byte(`["193.0.2.1"]`))
		},
		"/slowbody": func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(`["193.0.2.1",`))
			w.(http.Flusher).Flush()
			time.Sleep(3 * time.Second)
			_, _ = w.Write([]byte(`"193.0.2.2"]`))
		},
		"/loop":   func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/loop", http.StatusFound) },
		"/tohttp": func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, plain.URL, http.StatusFound) },
	})
	tests := []struct{ path, want string }{
		{"/404", "HTTP 404 Not Found"},
		{"/503", "HTTP 503 Service Unavailable"},
		{"/html", "invalid JSON: want an array of strings"},
		{"/object", "invalid JSON: want an array of strings"},
		{"/number", "entry 2: want a string, got 42"},
		{"/bad", `entry 2 "foo; bar": not an IP address or CIDR`},
		{"/zone", "not an IP address or CIDR"},
		// A typo is refused, not widened to 256 addresses.
		{"/hostbits", `entry 2 "44.242.69.192/24": host bits set: want 44.242.69.0/24, or 44.242.69.192/32 for the one address`},
		{"/empty", "empty list"},
		{"/null", "empty list"},
		{"/huge", "response larger than 1 MiB"},
		// The same words whichever phase the timeout caught: the
		// transport's own differ (headers, body, or a busy machine's dial).
		{"/slow", "no complete answer within 2s (http.timeout)"},
		{"/slowbody", "no complete answer within 2s (http.timeout)"},
		{"/loop", "more than 3 redirects"},
		{"/tohttp", "redirect to non-HTTPS"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			u := srv.URL + tt.path
			r := New(u, client, Options{}).Resolve(context.Background())
			if r.Err == nil {
				t.Fatalf("accepted: %v", r.Addresses)
			}
			msg := r.Err.Error()
			if !strings.HasPrefix(msg, u+": ") || !strings.Contains(msg, tt.want) || strings.Contains(msg, "\n") {
				t.Errorf("error %q: want one line starting with the URL and containing %q", msg, tt.want)
			}
			if len(r.Addresses) != 0 {
				t.Errorf("failure carries addresses %v", r.Addresses)
			}
		})
	}
}

func TestTLSIsVerified(t *testing.T) {
	srv, _ := server(t, map[string]http.HandlerFunc{"/l": body(`["193.0.2.1"]`)})
	client, err := NewClient(ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r := New(srv.URL+"/l", client, Options{}).Resolve(context.Background())
	if r.Err == nil || !strings.Contains(r.Err.Error(), "certificate") {
		t.Fatalf("untrusted certificate accepted: %v", r.Err)
	}
}

func TestNewClientBadCAFile(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "x.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{filepath.Join(dir, "missing.pem"): "no such file", notPEM: "no PEM certificates"} {
		_, err := NewClient(ClientOptions{CAFile: path})
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), path) {
			t.Errorf("CAFile %s: %v", path, err)
		}
	}
}

func TestContextCancelled(t *testing.T) {
	srv, client := server(t, map[string]http.HandlerFunc{"/l": body(`["193.0.2.1"]`)})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if r := New(srv.URL+"/l", client, Options{}).Resolve(ctx); r.Err == nil {
		t.Fatal("cancelled fetch succeeded")
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{`["193.0.2.1"]`, `[]`, `["::1/128", "10.0.0.0/8"]`, `[1]`, `{"a":1}`, `["::ffff:1.2.3.4/120"]`, `null`, `["44.242.69.192/24"]`, `["2001:db9::1/48"]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ps, err := Parse(data)
		if err != nil {
			if len(ps) != 0 || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q with %d prefixes", err, len(ps))
			}
			return
		}
		if len(ps) == 0 {
			t.Fatal("success with no prefixes")
		}
		for _, p := range ps {
			if !p.IsValid() || p != p.Masked() || p.Addr().Is4In6() {
				t.Fatalf("non-canonical prefix %v", p)
			}
		}
	})
}

// Formats go through the same fetch: TLS, caps and one-line failures that
// name the URL and the offending value.
func TestFormats(t *testing.T) {
	srv, client := server(t, map[string]http.HandlerFunc{
		"/ips-v4": body("193.0.2.0/24\n# comment\n\n198.52.100.7\n"),
		"/meta":   body(`{"hooks": ["193.0.2.0/24", "2001:db9::/48"], "web": [443]}`),
	})
	text, _ := listformat.New("text", "")
	hooks, _ := listformat.New("json", ".hooks[]")
	web, _ := listformat.New("json", ".web[]")
	none, _ := listformat.New("json", ".nothing[]?")
	for _, tc := range []struct {
		path   string
		parser *listformat.Parser
		want   []string
		err    string
	}{
		{"/ips-v4", text, []string{"193.0.2.0/24", "198.52.100.7/32"}, ""},
		{"/meta", hooks, []string{"193.0.2.0/24", "2001:db9::/48"}, ""},
		{"/meta", web, nil, srv.URL + "/meta: jq result 1: want a string (IP or CIDR), got 443"},
		{"/meta", none, nil, srv.URL + "/meta: empty list"},
		{"/meta", text, nil, srv.URL + `/meta: line 1 "{\"hooks\": [`},
	} {
		r := New(srv.URL+tc.path, client, Options{Parser: tc.parser}).Resolve(context.Background())
		if tc.err != "" {
			if r.Err == nil || !strings.HasPrefix(r.Err.Error(), tc.err) || strings.Contains(r.Err.Error(), "\n") || r.Addresses != nil {
				t.Errorf("%s: err %v, want %q", tc.path, r.Err, tc.err)
			}
			continue
		}
		var got, want []netip.Prefix
		for _, a := range r.Addresses {
			got = append(got, a.Prefix)
		}
		for _, w := range tc.want {
			want = append(want, netip.MustParsePrefix(w))
		}
		if diff := cmp.Diff(want, got, cmpopts.EquateComparable(netip.Prefix{})); diff != "" || r.Err != nil {
			t.Errorf("%s: err %v (-want +got):\n%s", tc.path, r.Err, diff)
		}
	}
}

// Loading the system CA pool costs about 15 ms, so a run must not pay it
// before its first HTTPS request (a DNS-only resolve never pays it), and it
// pays it once.
func TestSystemPoolLoadedOnFirstRequest(t *testing.T) {
	loads := 0
	orig := systemPool
	systemPool = func() (*x509.CertPool, error) { loads++; return orig() }
	t.Cleanup(func() { systemPool = orig })

	srv, client := server(t, map[string]http.HandlerFunc{"/list": body(`["193.0.2.1"]`)})
	if loads != 0 {
		t.Fatalf("NewClient loaded the system pool %d times before any request", loads)
	}
	for range 2 {
		if r := New(srv.URL+"/list", client, Options{}).Resolve(context.Background()); r.Err != nil || len(r.Addresses) != 1 {
			t.Fatalf("resolve: %v, %v", r.Addresses, r.Err)
		}
	}
	if loads != 1 {
		t.Errorf("system pool loaded %d times over two requests, want 1", loads)
	}
}
