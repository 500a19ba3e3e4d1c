package resolve_test

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/pdsafelist/pdsafelist/docs/schema"
	"github.com/pdsafelist/pdsafelist/pkg/cmd/root"
	"github.com/pdsafelist/pdsafelist/pkg/cmdutil"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/schemacheck"
)

// runResolve runs `pdsafelist resolve -o json` with cfg (where URL stands
// for an HTTPS test server serving body) and returns the exit code, stdout
// and stderr.
func runResolve(t *testing.T, cfg, body string) (int, string, string) {
	t.Helper()
	dir := t.TempDir()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(body)) }))
	t.Cleanup(srv.Close)
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "pdsafelist.yaml")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(cfg, "URL", srv.URL)), 0o644); err != nil {
		t.Fatal(err)
	}
	streams, out, errOut := cmdutil.Test()
	f := root.NewFactory(streams)
	code := root.Execute(context.Background(), f, []string{"resolve", "-o", "json", "--config", path, "--ca-file", ca})
	if code == 0 {
		schemacheck.Assert(t, schema.Resolve, out.Bytes())
	}
	return code, out.String(), errOut.String()
}

func TestSourcesListResolves(t *testing.T) {
	code, out, errOut := runResolve(t, `
sets: [vendor]
catalog:
  vendor:
    direction: ingress
    ports: [443]
    static: [54.1.1.0/24]
    sources:
      - {type: http, url: "URL/meta", format: json, jq: '.hooks[]'}
      - {type: static, prefixes: ["44.2.2.2"]}
`, `{"hooks": ["193.0.2.0/24", "2001:db9::/48"], "web": ["198.52.100.1"]}`)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var doc struct {
		Sets []struct {
			Prefixes []string `json:"prefixes"`
			Sources  []struct {
				Kind, Name string
			} `json:"sources"`
		} `json:"sets"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc.Sets) != 1 {
		t.Fatalf("output %s: %v", out, err)
	}
	want := []string{"44.2.2.2/32", "54.1.1.0/24", "193.0.2.0/24", "2001:db9::/48"}
	if diff := cmp.Diff(want, doc.Sets[0].Prefixes); diff != "" {
		t.Errorf("prefixes (-want +got):\n%s", diff)
	}
	if got := doc.Sets[0].Sources[2].Name; got != "catalog.vendor.sources[1]" {
		t.Errorf("static source named %q", got)
	}
}

var tempConfig = regexp.MustCompile(`/\S*/pdsafelist\.yaml`)

// A typo in a source's keys stops the command with one line naming the
// entry and every valid key, before anything is queried.
func TestSourceSpecErrors(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{`{type: http, url: "URL/x", jqq: '.a'}`, `error: config catalog.vendor.sources[0]: pdsafelist.yaml:7: unknown key "jqq" for type http (valid keys: type, url, format, jq, max_bytes, min_interval, backoff_after, max_backoff, token, until)`},
		{`{type: ftp, url: "URL/x"}`, `error: config catalog.vendor.sources[0]: unknown source type "ftp" (known: dns, file, http, static, vendor)`},
		{`{type: http, url: "URL/x", jq: '.a[', format: json}`, `error: config catalog.vendor.sources[0]: jq ".a[": unexpected EOF`},
		{`{type: http, url: "URL/x", format: csv}`, `error: config catalog.vendor.sources[0]: format "csv": want json or text`},
		{`{type: http, url: "http://example.com/x"}`, `error: config catalog.vendor.sources[0]: url "http://example.com/x": want an https:// URL`},
		{`{type: static, prefixes: 44.2.2.2}`, `error: config catalog.vendor.sources[0]: pdsafelist.yaml:7: prefixes: want a list such as [a, b], got "44.2.2.2"`},
		{`{type: file, format: text}`, `error: config catalog.vendor.sources[0]: missing path`},
		{`{type: dns}`, `error: config catalog.vendor.sources[0]: missing name`},
		{`{type: static, prefixes: [44.2.2.2], name: x}`, `error: config catalog.vendor.sources[0]: pdsafelist.yaml:7: unknown key "name" for type static (valid keys: type, prefixes, until)`},
	} {
		code, _, errOut := runResolve(t, "sets: [vendor]\ncatalog:\n  vendor:\n    direction: ingress\n    ports: [443]\n    sources:\n      - "+tc.src+"\n", `[]`)
		errOut = tempConfig.ReplaceAllString(errOut, "pdsafelist.yaml")
		if code != 1 || !strings.HasPrefix(errOut, tc.want) || strings.Count(errOut, "\n") != 1 {
			t.Errorf("%s: exit %d, stderr %q, want %q", tc.src, code, errOut, tc.want)
		}
	}
}

// -vv logs each list fetch with its status and time.
func TestFetchLoggedAtDebug(t *testing.T) {
	dir := t.TempDir()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(`["44.2.2.2"]`)) }))
	t.Cleanup(srv.Close)
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "pdsafelist.yaml")
	cfg := "sets: [vendor]\ncatalog:\n  vendor:\n    direction: ingress\n    ports: [443]\n    sources: [{type: http, url: " + srv.URL + "/x}]\n"
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	streams, _, errOut := cmdutil.Test()
	code := root.Execute(context.Background(), root.NewFactory(streams), []string{"resolve", "-vv", "--config", path, "--ca-file", ca})
	if code != 0 {
		t.Fatalf("code %d: %s", code, errOut)
	}
	for _, want := range []string{"http fetch", srv.URL + "/x", "status=200", "took="} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("-vv log lacks %q:\n%s", want, errOut)
		}
	}
}
