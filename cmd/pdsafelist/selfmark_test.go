package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pdsafelist/pdsafelist/pkg/testutil"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/netns"
)

// With enforce=egress on 443, the first apply drops 443 to every address
// not on the list, the list's own host included. The tool's sockets carry
// the self mark, which the egress chain accepts, so the second and third
// runs still fetch the list, while an unmarked connection from the same
// host to that host on 443 is dropped. With self_mark 0 the second run is
// locked out: the test can fail.
func TestEgressEnforceKeepsOwnSources(t *testing.T) {
	testutil.Integration(t, true, "ip", "nft", "iptables", "ip6tables")
	bin := build(t)
	for _, tc := range []struct {
		name, sink string
		mark       string
	}{
		{"nftables", "nftables:%s/out.nft?enforce=egress&apply=true", ""},
		{"iptables", "iptables?enforce=egress", ""},
		{"nftables-unmarked", "nftables:%s/out.nft?enforce=egress&apply=true", "0"},
		{"iptables-unmarked", "iptables?enforce=egress", "0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := netip.MustParseAddr("193.0.2.10")
			p := netns.New(t, client)
			dir := t.TempDir()
			caFile := filepath.Join(dir, "ca.pem")
			var hits atomic.Int32
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				fmt.Fprint(w, `["44.242.69.192","54.213.187.133"]`)
			}))
			srv.Listener.Close()
			srv.Listener = p.Listen(t, p.Server, 443)
			srv.TLS = serverTLS(t, netns.Server4, caFile)
			srv.StartTLS()
			t.Cleanup(srv.Close)

			cfg := filepath.Join(dir, "pdsafelist.yaml")
			body := fmt.Sprintf("sets: [lists]\nca_file: %s\nhttp: {timeout: 3s}\ncatalog:\n  lists: {direction: egress, ports: [443], urls: [\"https://%s/list.json\"]}\n", caFile, netns.Server4)
			if tc.mark != "" {
				body += "self_mark: \"" + tc.mark + "\"\n"
			}
			if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			unmarked := func() bool {
				_, err := p.HTTPStatus(client, netns.Server4, 443, "/", 2*time.Second)
				return err == nil
			}
			// A fresh link on a loaded host can take a moment.
			reachable := false
			for i := 0; i < 5 && !reachable; i++ {
				reachable = unmarked()
			}
			if !reachable {
				t.Fatal("list host unreachable before the first run")
			}
			sinkSpec := tc.sink
			if len(sinkSpec) > 8 && sinkSpec[:8] == "nftables" {
				sinkSpec = fmt.Sprintf(tc.sink, dir)
			}
			for run := 1; run <= 3; run++ {
				cmd := exec.Command("ip", "netns", "exec", p.Client, bin, "sync", "--config", cfg,
					"--state-dir", filepath.Join(dir, "state"), "--sink", sinkSpec)
				out, err := cmd.CombinedOutput()
				fetched := int(hits.Load()) == run
				if tc.mark == "0" && run == 2 {
					// The control: without the mark the tool locks itself out.
					if err == nil && fetched {
						t.Fatalf("run 2 without a mark reached the list host; the test proves nothing\n%s", out)
					}
					return
				}
				if err != nil || !fetched {
					t.Fatalf("run %d: %v, list fetched %d times\n%s", run, err, hits.Load(), out)
				}
				if unmarked() {
					t.Fatalf("after run %d: an unmarked connection reached the list host on 443; egress enforce is not on", run)
				}
			}
		})
	}
}

// serverTLS makes a self-signed certificate for addr and writes it to
// caFile for the tool's ca_file.
func serverTLS(t *testing.T, addr netip.Addr, caFile string) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: addr.String()},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{addr.AsSlice()}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}
