// Package standin serves a snapshot of PagerDuty's DNS names and published
// IP lists on loopback, so the demo and the integration tests run the whole
// job with no internet. The snapshot lives in testdata/snapshot.
package standin

import (
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pdsafelist/pdsafelist/pkg/testutil/dnstest"
)

// ListsPath is where the lists are served, mirroring PagerDuty's site.
const ListsPath = "/ip-safelists"

// Options say what to serve and how.
type Options struct {
	// Snapshot is the directory with dns.json and the list files.
	Snapshot string
	// DNSAddr and HTTPAddr default to 127.0.0.1 on a free port.
	DNSAddr, HTTPAddr string
	// Delay is added to every DNS answer, to measure round trips.
	Delay time.Duration
}

// StandIn is a running DNS server and HTTPS list server.
type StandIn struct {
	DNS *dnstest.Server
	web *httptest.Server
}

// zoneFile is the format of dns.json.
type zoneFile struct {
	TTL     uint32 `json:"ttl_seconds"`
	Records map[string]struct {
		CNAME  string   `json:"cname"`
		A      []string `json:"a"`
		AAAA   []string `json:"aaaa"`
		Subset int      `json:"subset"`
	} `json:"records"`
}

// LoadZone reads dns.json from the snapshot directory.
func LoadZone(dir string) (dnstest.Zone, error) {
	path := filepath.Join(dir, "dns.json")
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("standin: %w", err)
	}
	var f zoneFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("standin: %s: %w", path, err)
	}
	if len(f.Records) == 0 {
		return nil, fmt.Errorf("standin: %s: no records", path)
	}
	zone := dnstest.Zone{}
	for name, r := range f.Records {
		zone[name] = dnstest.Record{CNAME: r.CNAME, A: r.A, AAAA: r.AAAA, Subset: r.Subset, TTL: f.TTL}
	}
	return zone, nil
}

var listName = regexp.MustCompile(`^[a-z0-9_-]+$`)

// Start serves the snapshot until Close.
func Start(o Options) (*StandIn, error) {
	zone, err := LoadZone(o.Snapshot)
	if err != nil {
		return nil, err
	}
	dnsAddr := o.DNSAddr
	if dnsAddr == "" {
		dnsAddr = "127.0.0.1:0"
	}
	d, err := dnstest.StartOn(dnsAddr, zone)
	if err != nil {
		return nil, err
	}
	d.SetDelay(o.Delay)
	web := httptest.NewUnstartedServer(lists(o.Snapshot))
	web.Config.ErrorLog = log.New(quietHangups{os.Stderr}, "", log.LstdFlags)
	if o.HTTPAddr != "" {
		ln, err := net.Listen("tcp", o.HTTPAddr)
		if err != nil {
			d.Close()
			return nil, fmt.Errorf("standin: %w", err)
		}
		web.Listener.Close()
		web.Listener = ln
	}
	web.StartTLS()
	return &StandIn{DNS: d, web: web}, nil
}

// quietHangups drops the server's log lines about clients that hung up in
// the TLS handshake: Go's transport may dial a spare connection that the
// exiting CLI then resets, which is no fault of the stand-in. Every other
// line goes to w.
type quietHangups struct{ w io.Writer }

func (q quietHangups) Write(p []byte) (int, error) {
	l := string(p)
	if strings.Contains(l, "TLS handshake error") && (strings.Contains(l, "connection reset by peer") || strings.HasSuffix(strings.TrimSpace(l), ": EOF")) {
		return len(p), nil
	}
	return q.w.Write(p)
}

// lists serves each snapshot file by name under ListsPath, and the legacy
// list at /webhook_ips, as PagerDuty does.
func lists(dir string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, ok := strings.CutPrefix(r.URL.Path, ListsPath+"/")
		if r.URL.Path == "/webhook_ips" {
			name, ok = "webhook_ips", true
		}
		if !ok || !listName.MatchString(name) {
			http.NotFound(w, r)
			return
		}
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(data)
	})
}

// Nameserver is the DNS address for --nameserver.
func (s *StandIn) Nameserver() string { return s.DNS.Addr() }

// ListsURL is the base for --pagerduty-lists-url.
func (s *StandIn) ListsURL() string { return s.web.URL + ListsPath }

// WebhookIPsURL is the legacy list, for --webhook-ips-url.
func (s *StandIn) WebhookIPsURL() string { return s.web.URL + "/webhook_ips" }

// CAPEM is the certificate that signs the HTTPS server, for --ca-file.
func (s *StandIn) CAPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.web.Certificate().Raw})
}

// Flags are the global flags that point pdsafelist at the stand-in.
func (s *StandIn) Flags(caFile string) []string {
	return []string{"--nameserver", s.Nameserver(), "--pagerduty-lists-url", s.ListsURL(), "--ca-file", caFile}
}

// StartT starts a stand-in that stops when the test ends and returns it
// with the global flags that point pdsafelist at it.
func StartT(t testing.TB, o Options) (*StandIn, []string) {
	t.Helper()
	s, err := Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, s.CAPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	return s, s.Flags(ca)
}

// Close stops both servers.
func (s *StandIn) Close() {
	s.web.Close()
	s.DNS.Close()
}
