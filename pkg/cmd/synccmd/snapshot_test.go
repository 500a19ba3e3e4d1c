package synccmd_test

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pdsafelist/pdsafelist/pkg/cmd/root"
	"github.com/pdsafelist/pdsafelist/pkg/cmdutil"
	"github.com/pdsafelist/pdsafelist/pkg/testutil"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/standin"
)

const snapshot = "../../../testdata/snapshot"

func execute(t *testing.T, args ...string) result {
	t.Helper()
	streams, out, errOut := cmdutil.Test()
	code := root.Execute(context.Background(), root.NewFactory(streams), args)
	return result{code, out.String(), errOut.String()}
}

// readList returns a snapshot list file's addresses.
func readList(t *testing.T, name string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(snapshot, name))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// withDNSOnly copies the snapshot and adds to each api name an address its
// list does not name: today's DNS answers are a subset of the lists, so
// only such an address shows that DNS and list are unioned.
func withDNSOnly(t *testing.T, extra map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	entries, err := os.ReadDir(snapshot)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(snapshot, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if e.Name() == "dns.json" {
			var zone map[string]any
			if err := json.Unmarshal(data, &zone); err != nil {
				t.Fatal(err)
			}
			records := zone["records"].(map[string]any)
			for name, addr := range extra {
				r := records[name].(map[string]any)
				r["a"] = append(r["a"].([]any), addr)
				delete(r, "subset")
			}
			if data, err = json.Marshal(zone); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// The whole job against the stand-in: every default set in both regions
// resolves from the snapshot's DNS names and lists, and sync writes an
// nftables file that nft accepts.
func TestSnapshotEndToEnd(t *testing.T) {
	dnsOnly := map[string]string{"api.gslb.pagerduty.com": "54.203.252.221", "api.eu.pagerduty.com": "3.121.114.20"}
	_, flags := standin.StartT(t, standin.Options{Snapshot: withDNSOnly(t, dnsOnly)})
	global := append([]string{"--region", "all"}, flags...)
	r := execute(t, append([]string{"resolve", "-o", "json"}, global...)...)
	if r.code != 0 {
		t.Fatalf("resolve: code %d\n%s", r.code, r.errOut)
	}
	var doc struct {
		Sets []struct {
			Name     string         `json:"name"`
			Frozen   bool           `json:"frozen"`
			Prefixes []netip.Prefix `json:"prefixes"`
			Sources  []struct {
				Kind, Name, Error string
			} `json:"sources"`
		} `json:"sets"`
	}
	if err := json.Unmarshal([]byte(r.out), &doc); err != nil {
		t.Fatalf("resolve JSON: %v\n%s", err, r.out)
	}
	got := map[string][]netip.Prefix{}
	for _, s := range doc.Sets {
		if s.Frozen || len(s.Prefixes) == 0 {
			t.Errorf("set %s frozen=%v with %d prefixes: %+v", s.Name, s.Frozen, len(s.Prefixes), s.Sources)
		}
		got[s.Name] = s.Prefixes
	}
	has := func(set, addr string) bool {
		return slices.ContainsFunc(got[set], func(p netip.Prefix) bool { return p.Contains(netip.MustParseAddr(addr)) })
	}
	for _, a := range append(readList(t, "webhooks-us-service-region-json"), readList(t, "webhooks-eu-service-region-json")...) {
		if !has("webhooks", a) {
			t.Errorf("webhooks lacks listed %s", a)
		}
	}
	for _, a := range append(append(readList(t, "rest-api-us-service-region-json"), readList(t, "rest-api-eu-service-region-json")...), dnsOnly["api.gslb.pagerduty.com"], dnsOnly["api.eu.pagerduty.com"]) {
		if !has("api", a) {
			t.Errorf("api lacks %s (list and DNS are unioned)", a)
		}
	}
	for set, addr := range map[string]string{"app": "2600:1f14:d0c:9d00::a1", "events": "18.159.153.65"} {
		if !has(set, addr) {
			t.Errorf("%s lacks %s", set, addr)
		}
	}
	if has("webhooks", "52.13.4.226") {
		t.Error("the legacy webhook_ips list was used without being asked for")
	}

	testutil.Integration(t, true, "nft")
	dir := t.TempDir()
	nft := filepath.Join(dir, "pagerduty.nft")
	syncArgs := append([]string{"sync", "--state-dir", dir, "--sink", "nftables:" + nft + "?check=always"}, global...)
	if r := execute(t, append(syncArgs, "--dry-run", "--detailed-exitcode")...); r.code != 2 || !strings.Contains(r.out, "to add, 0 to remove.") {
		t.Fatalf("dry run: code %d\n%s%s", r.code, r.out, r.errOut)
	}
	// Subset DNS answers rotate; retention keeps what earlier runs saw, so
	// the file converges and then stays byte-identical.
	var before []byte
	for i := range 3 {
		if r := execute(t, syncArgs...); r.code != 0 {
			t.Fatalf("sync %d: code %d\n%s%s", i+1, r.code, r.out, r.errOut)
		}
		before, _ = os.ReadFile(nft)
	}
	r = execute(t, append(syncArgs, "--detailed-exitcode")...)
	if r.code != 0 || !strings.Contains(r.out, "No changes.") {
		t.Fatalf("converged sync: code %d\n%s%s", r.code, r.out, r.errOut)
	}
	if after, _ := os.ReadFile(nft); string(after) != string(before) {
		t.Error("a sync with no changes rewrote the file")
	}
}
