package synccmd_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pdsafelist/pdsafelist/pkg/testutil/dnstest"
)

// Issue 11 item 2, end to end: DNS answers 1 of 5 addresses per query
// (GSLB style); runs converge on all 5; a lost, corrupt or fresh state must
// not remove an address DNS still serves, and a CI drift check with a fresh
// state dir against a correct firewall finds no changes.
func TestColdStartKeepsServedAddresses(t *testing.T) {
	served := []string{"44.242.69.1", "44.242.69.3", "44.242.69.5", "44.242.69.7", "44.242.69.9"}
	dns := dnstest.StartT(t, dnstest.Zone{"events.gslb.test": {A: served, Subset: 1}})
	for name, lose := range map[string]func(t *testing.T, path string){
		"deleted": func(t *testing.T, path string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		},
		"corrupt": func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte("{\"format_version\":1,\"sets\":{\"events\""), 0o644); err != nil {
				t.Fatal(err)
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			config := fmt.Sprintf("sets: [events]\nnameservers: [%q]\ndns: {attempts: 1}\ncatalog:\n  events:\n    direction: egress\n    ports: [443]\n    dns: [events.gslb.test]\n    urls: []\n", dns.Addr())
			if err := os.WriteFile(filepath.Join(e.dir, "pdsafelist.yaml"), []byte(config), 0o644); err != nil {
				t.Fatal(err)
			}
			for range served {
				if r := e.run("sync"); r.code != 0 {
					t.Fatalf("converging: code %d\n%s%s", r.code, r.out, r.errOut)
				}
				e.now = e.now.Add(time.Minute)
			}
			for _, a := range served {
				if !strings.Contains(e.file(), a+"/32") {
					t.Fatalf("did not converge on %s:\n%s", a, e.file())
				}
			}
			lose(t, filepath.Join(e.state, "state.json"))
			converged := e.file()
			r := e.run("sync", "--detailed-exitcode")
			if r.code != 0 || e.file() != converged {
				t.Errorf("after losing the state: code %d, file changed %v\n%s%s", r.code, e.file() != converged, r.out, r.errOut)
			}
			// A CI drift check starts with a fresh state every time.
			r = e.run("sync", "--dry-run", "--detailed-exitcode", "--state-dir", t.TempDir())
			if r.code != 0 {
				t.Errorf("fresh-state drift check: code %d, want 0\n%s%s", r.code, r.out, r.errOut)
			}
		})
	}
}

// Issue 11 item 4, end to end: an answer with TTL 2147483647 keeps its
// address for --max-ttl (default 24h) after it leaves DNS, not 68 years.
func TestPoisonedTTLIsCapped(t *testing.T) {
	dns := dnstest.StartT(t, dnstest.Zone{"events.ttl.test": {A: []string{"44.242.69.1", "44.242.69.3"}, TTL: 2147483647}})
	e := newEnv(t)
	config := fmt.Sprintf("sets: [events]\nnameservers: [%q]\ndns: {attempts: 1}\ncatalog:\n  events:\n    direction: egress\n    ports: [443]\n    dns: [events.ttl.test]\n    urls: []\n", dns.Addr())
	if err := os.WriteFile(filepath.Join(e.dir, "pdsafelist.yaml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := e.run("sync"); r.code != 0 || !strings.Contains(e.file(), "44.242.69.3/32") {
		t.Fatalf("first run: code %d\n%s%s", r.code, r.out, r.errOut)
	}
	dns.Set("events.ttl.test", dnstest.Record{A: []string{"44.242.69.1"}, TTL: 2147483647})
	e.now = e.now.Add(23 * time.Hour)
	if r := e.run("sync"); r.code != 0 || !strings.Contains(e.file(), "44.242.69.3/32") {
		t.Fatalf("within 24h: code %d\n%s%s", r.code, r.out, r.errOut)
	}
	e.now = e.now.Add(time.Hour)
	if r := e.run("sync"); r.code != 0 || strings.Contains(e.file(), "44.242.69.3/32") {
		t.Fatalf("after 24h: code %d\n%s%s", r.code, r.out, r.errOut)
	}
	if r := e.run("sync", "--max-ttl", "8760h"); r.code != 1 || !strings.Contains(r.errOut, "max_ttl 8760h0m0s: want more than 0 and at most 168h0m0s") {
		t.Errorf("--max-ttl 8760h: code %d\n%s", r.code, r.errOut)
	}
}

// Issue 11 item 3, end to end: after a DNS outage longer than grace, the
// first subset answer does not remove the addresses it left out.
func TestOutageDoesNotUseUpRetention(t *testing.T) {
	served := []string{"44.242.69.1", "44.242.69.3", "44.242.69.5"}
	dns := dnstest.StartT(t, dnstest.Zone{"events.out.test": {A: served}})
	e := newEnv(t)
	config := fmt.Sprintf("sets: [events]\nnameservers: [%q]\ndns: {attempts: 1}\ncatalog:\n  events:\n    direction: egress\n    ports: [443]\n    dns: [events.out.test]\n    urls: []\n", dns.Addr())
	if err := os.WriteFile(filepath.Join(e.dir, "pdsafelist.yaml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := e.run("sync"); r.code != 0 {
		t.Fatalf("first run: code %d\n%s%s", r.code, r.out, r.errOut)
	}
	before := e.file()
	dns.SetFault("events.out.test", dnstest.ServFail)
	for range 6 {
		e.now = e.now.Add(30 * time.Minute)
		if r := e.run("sync"); r.code != 1 || e.file() != before {
			t.Fatalf("during the outage: code %d, file changed %v\n%s%s", r.code, e.file() != before, r.out, r.errOut)
		}
	}
	dns.Set("events.out.test", dnstest.Record{A: served, Subset: 1})
	e.now = e.now.Add(30 * time.Minute)
	if r := e.run("sync", "--detailed-exitcode"); r.code != 0 || e.file() != before {
		t.Errorf("first answer after 3h30m frozen: code %d, file changed %v\n%s%s", r.code, e.file() != before, r.out, r.errOut)
	}
}
