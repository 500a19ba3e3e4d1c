package httplist

import (
	"context"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A list on a public host that redirects to a loopback, private or
// link-local address is refused, naming both URLs: a hijacked list must
// not make the tool fetch from inside the network. Hops that stay inside
// (all tests' servers are loopback) or stay public are followed. The test
// calls the server on one port public.
func TestRedirectFromPublicToInternalRefused(t *testing.T) {
	list := `["193.0.2.1"]`
	inside := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/moved" {
			http.Redirect(w, r, "/list", http.StatusFound)
			return
		}
		_, _ = w.Write([]byte(list))
	}))
	t.Cleanup(inside.Close)
	var public *httptest.Server
	public = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/inside":
			http.Redirect(w, r, inside.URL+"/list", http.StatusFound)
		case "/chain":
			http.Redirect(w, r, public.URL+"/inside", http.StatusFound)
		case "/moved":
			http.Redirect(w, r, "/list", http.StatusMovedPermanently)
		default:
			_, _ = w.Write([]byte(list))
		}
	}))
	t.Cleanup(public.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: public.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	pu, _ := url.Parse(public.URL)
	publicAddr := netip.MustParseAddrPort(pu.Host)
	client, err := NewClient(ClientOptions{CAFile: ca, Timeout: 2 * time.Second, classify: func(ap netip.AddrPort) string {
		if ap == publicAddr {
			return ""
		}
		return Classify(ap)
	}})
	if err != nil {
		t.Fatal(err)
	}
	fetch := func(u string) error {
		return New(u, client, Options{}).Resolve(context.Background()).Err
	}
	// Followed: inside to inside, public to public. Fetching inside
	// first also leaves a pooled connection to it, which a refused hop
	// must not reuse.
	for _, u := range []string{inside.URL + "/moved", public.URL + "/moved", inside.URL + "/list"} {
		if err := fetch(u); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
	for _, from := range []string{public.URL + "/inside", public.URL + "/chain"} {
		err := fetch(from)
		if err == nil {
			t.Errorf("%s: redirect to %s followed", from, inside.URL)
			continue
		}
		msg := err.Error()
		for _, want := range []string{public.URL + "/inside", inside.URL + "/list", "loopback", "refused"} {
			if !strings.Contains(msg, want) {
				t.Errorf("%s: error %q lacks %q", from, msg, want)
			}
		}
		if strings.Contains(msg, "\n") {
			t.Errorf("%s: error is not one line: %q", from, msg)
		}
	}
}

func TestClassify(t *testing.T) {
	for addr, want := range map[string]string{
		"127.0.0.1:443": "loopback", "[::1]:443": "loopback", "0.0.0.0:443": "unspecified",
		"10.1.2.3:443": "private", "192.168.1.1:443": "private", "[fd00::1]:443": "private", "100.64.0.1:443": "private",
		"169.254.169.254:80": "link-local", "[fe80::1]:443": "link-local", "[::ffff:10.0.0.1]:443": "private",
		"44.242.69.192:443": "", "[2001:db9::1]:443": "",
	} {
		if got := Classify(netip.MustParseAddrPort(addr)); got != want {
			t.Errorf("Classify(%s) = %q, want %q", addr, got, want)
		}
	}
}
