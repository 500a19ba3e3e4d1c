package vendor

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/itchyny/gojq"
	"go.yaml.in/yaml/v3"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/source"
	"github.com/pdsafelist/pdsafelist/pkg/state"
	"github.com/pdsafelist/pdsafelist/pkg/testutil"
)

const presetsDir = "../../../testdata/vendors/presets"

// samples maps each URL a preset fetches to its sample: the vendor's
// structure and prefix lengths, reconstructed (see the README there).
var samples = map[string]string{
	"https://ip-ranges.amazonaws.com/ip-ranges.json":                               "aws-ip-ranges.json",
	"https://d7uri8nf7uskq.cloudfront.net/tools/list-cloudfront-ips":               "aws-cloudfront.json",
	"https://www.gstatic.com/ipranges/goog.json":                                   "google-goog.json",
	"https://www.gstatic.com/ipranges/cloud.json":                                  "google-cloud.json",
	"https://www.cloudflare.com/ips-v4":                                            "cloudflare-ips-v4.txt",
	"https://www.cloudflare.com/ips-v6":                                            "cloudflare-ips-v6.txt",
	"https://api.github.com/meta":                                                  "github-meta.json",
	"https://ip-ranges.atlassian.com/":                                             "atlassian-ip-ranges.json",
	"https://stripe.com/files/ips/ips_webhooks.json":                               "stripe-ips-webhooks.json",
	"https://stripe.com/files/ips/ips_api.json":                                    "stripe-ips-api.json",
	"https://ip-ranges.datadoghq.com/":                                             "datadog-ip-ranges.json",
	"https://ip-ranges.datadoghq.eu/":                                              "datadog-ip-ranges.json",
	"https://api.fastly.com/public-ip-list":                                        "fastly-public-ip-list.json",
	"https://docs.oracle.com/en-us/iaas/tools/public_ip_ranges.json":               "oracle-public-ip-ranges.json",
	"https://app.terraform.io/api/meta/ip-ranges":                                  "hcp-terraform-ip-ranges.json",
	"https://grafana.com/api/hosted-alerts/source-ips.txt":                         "grafana-hosted-alerts.txt",
	"https://grafana.com/api/hosted-grafana/source-ips.txt":                        "grafana-hosted-grafana.txt",
	"https://grafana.com/api/hosted-metrics/source-ips.txt":                        "grafana-hosted-metrics.txt",
	"https://grafana.com/api/hosted-traces/source-ips.txt":                         "grafana-hosted-traces.txt",
	"https://grafana.com/api/hosted-logs/source-ips.txt":                           "grafana-hosted-logs.txt",
	"https://static.intercomcdn.com/intercom-ips/us/intercom-ip-ranges.json":       "intercom-us.json",
	"https://static.intercomcdn.com/intercom-ips/eu/intercom-ip-ranges.json":       "intercom-eu.json",
	"https://static.intercomcdn.com/intercom-ips/au/intercom-ip-ranges.json":       "intercom-au.json",
	"https://developer.pagerduty.com/ip-safelists/webhooks-us-service-region-json": "../../snapshot/webhooks-us-service-region-json",
	"https://developer.pagerduty.com/ip-safelists/webhooks-eu-service-region-json": "../../snapshot/webhooks-eu-service-region-json",
	"https://developer.pagerduty.com/ip-safelists/rest-api-us-service-region-json": "../../snapshot/rest-api-us-service-region-json",
	"https://developer.pagerduty.com/ip-safelists/rest-api-eu-service-region-json": "../../snapshot/rest-api-eu-service-region-json",
}

// cases are filters of every preset: each must yield exactly what jq
// yields on the sample with the preset's expression, and something.
var cases = []string{
	`{name: pagerduty, list: webhooks}`,
	`{name: pagerduty, list: [webhooks, rest-api], region: [us, eu]}`,
	`{name: aws}`,
	`{name: aws, service: EC2, region: us-east-1}`,
	`{name: aws, service: [S3, CLOUDFRONT]}`,
	`{name: aws, network_border_group: us-west-2-lax-1}`,
	`{name: aws, service: ROUTE53_HEALTHCHECKS}`,
	`{name: aws-cloudfront}`,
	`{name: aws-cloudfront, edge: regional}`,
	`{name: google}`,
	`{name: google, list: cloud, scope: [us-central1, global]}`,
	`{name: google, list: cloud, service: Google Cloud}`,
	`{name: google, list: [goog, cloud]}`,
	`{name: cloudflare}`,
	`{name: cloudflare, family: ipv6}`,
	`{name: github, keys: hooks}`,
	`{name: github, keys: [web, api, git, actions, pages]}`,
	`{name: atlassian}`,
	`{name: atlassian, product: jira, direction: egress}`,
	`{name: atlassian, product: bitbucket, region: us-east-1}`,
	`{name: stripe, list: webhooks}`,
	`{name: stripe, list: [webhooks, api]}`,
	`{name: datadog, service: webhooks}`,
	`{name: datadog, service: [synthetics, api], site: [datadoghq.com, datadoghq.eu]}`,
	`{name: fastly}`,
	`{name: fastly, family: ipv4}`,
	`{name: oracle}`,
	`{name: oracle, region: us-ashburn-1, tag: OCI}`,
	`{name: oracle, tag: OBJECT_STORAGE}`,
	`{name: hcp-terraform, keys: [notifications, vcs]}`,
	`{name: hcp-terraform, keys: api}`,
	`{name: grafana, service: hosted-alerts}`,
	`{name: grafana, service: [hosted-grafana, hosted-metrics, hosted-traces, hosted-logs]}`,
	`{name: intercom}`,
	`{name: intercom, region: [eu, au]}`,
}

func spec(t *testing.T, opts string) source.Spec {
	t.Helper()
	var s source.Spec
	if err := yaml.Unmarshal([]byte("{type: vendor, "+strings.TrimPrefix(opts, "{")), &s); err != nil {
		t.Fatal(err)
	}
	s.Origin = "test " + opts
	return s
}

// vendorsServer serves every sample at its URL, whatever host the URL
// names, and a client that reaches it.
func vendorsServer(t *testing.T) *http.Client {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, ok := samples["https://"+r.Host+r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		http.ServeFile(w, r, filepath.Join(presetsDir, name))
	}))
	// The samples' hosts are not in httptest's certificate: one made for
	// them would need a CA; any name is accepted by this client instead,
	// which still speaks TLS to the server.
	srv.StartTLS()
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "example.com"},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}
}

// jqYields is what jq itself prints for expr on the file, as prefixes:
// the jq binary when installed, else gojq (required under CI).
func jqYields(t *testing.T, file string, l List) []netip.Prefix {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	if l.Format == "text" {
		for _, line := range strings.Split(string(data), "\n") {
			if line = strings.TrimSpace(line); line != "" {
				lines = append(lines, line)
			}
		}
	} else if path, err := exec.LookPath("jq"); err == nil {
		expr := l.JQ
		if expr == "" {
			expr = ".[]"
		}
		out, err := exec.Command(path, "-r", expr, file).Output()
		if err != nil {
			t.Fatalf("jq %q %s: %v", expr, file, err)
		}
		lines = strings.Fields(string(out))
	} else {
		if testutil.Required() {
			t.Fatalf("no jq binary on PATH, and %s=1 forbids comparing with gojq alone", testutil.RequireEnv)
		}
		lines = gojqYields(t, data, l.JQ)
	}
	var out []netip.Prefix
	for _, s := range lines {
		p, err := plan.ParsePrefix(s)
		if err != nil {
			t.Fatalf("%s: jq gave %q: %v", file, s, err)
		}
		out = append(out, p.Masked())
	}
	slices.SortFunc(out, plan.ComparePrefix)
	return slices.Compact(out)
}

func gojqYields(t *testing.T, data []byte, expr string) []string {
	if expr == "" {
		expr = ".[]"
	}
	q, err := gojq.Parse(expr)
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	var out []string
	iter := q.Run(doc)
	for {
		v, ok := iter.Next()
		if !ok {
			return out
		}
		if err, isErr := v.(error); isErr {
			t.Fatal(err)
		}
		out = append(out, v.(string))
	}
}

// Every preset yields exactly what jq itself yields on its sample with
// the preset's expression, for each case's filters.
func TestPresetsYieldWhatJQYields(t *testing.T) {
	client := vendorsServer(t)
	env := source.Env{HTTPClient: func() (*http.Client, error) { return client, nil }}
	covered := map[string]bool{}
	used := map[string]bool{}
	for _, c := range cases {
		t.Run(c, func(t *testing.T) {
			sp := spec(t, c)
			lists, err := Lists(sp)
			if err != nil {
				t.Fatal(err)
			}
			var want []netip.Prefix
			for _, l := range lists {
				file, ok := samples[l.URL]
				if !ok {
					t.Fatalf("no sample for %s", l.URL)
				}
				used[file] = true
				want = append(want, jqYields(t, filepath.Join(presetsDir, file), l)...)
			}
			slices.SortFunc(want, plan.ComparePrefix)
			want = slices.Compact(want)
			src, err := Factory.New(sp, env)
			if err != nil {
				t.Fatal(err)
			}
			covered[strings.SplitN(src.Name(), " ", 2)[0]] = true
			r := src.Resolve(context.Background())
			if r.Err != nil {
				t.Fatal(r.Err)
			}
			var got []netip.Prefix
			for _, a := range r.Addresses {
				got = append(got, a.Prefix)
			}
			if len(want) == 0 {
				t.Fatal("jq yields nothing: the case tests nothing")
			}
			if diff := cmp.Diff(want, got, cmpopts.EquateComparable(netip.Prefix{})); diff != "" {
				t.Errorf("(-jq +preset):\n%s", diff)
			}
		})
	}
	for _, name := range Names() {
		if !covered[name] {
			t.Errorf("preset %s has no case", name)
		}
	}
	for u, file := range samples {
		if !used[file] {
			t.Errorf("sample %s (%s) is not used by any case", file, u)
		}
	}
}

// A few answers checked by hand, so a preset and jq cannot agree on
// something wrong (a filter that selects everything).
func TestPresetFiltersSelect(t *testing.T) {
	client := vendorsServer(t)
	env := source.Env{HTTPClient: func() (*http.Client, error) { return client, nil }}
	for _, tt := range []struct {
		opts       string
		has, lacks []string
	}{
		{`{name: aws, service: EC2, region: us-east-1}`, []string{"44.192.0.0/11", "2600:1f18::/33", "15.181.232.0/21"}, []string{"54.231.0.0/16", "35.71.64.0/22", "2600:1f14::/35"}},
		{`{name: atlassian, product: jira, direction: egress}`, []string{"13.52.5.96/28", "185.166.140.0/22", "2401:1d80:3000::/36"}, []string{"104.192.136.0/21", "54.66.192.0/18", "3.216.235.48/28"}},
		{`{name: google, list: cloud, scope: us-central1}`, []string{"34.28.0.0/14", "2600:1900:4000::/44"}, []string{"34.23.0.0/16", "34.64.0.0/10"}},
		{`{name: oracle, tag: OBJECT_STORAGE}`, []string{"134.70.24.0/21", "134.70.80.0/22"}, []string{"138.1.48.0/21", "129.213.0.0/16"}},
		{`{name: intercom}`, []string{"34.197.76.213/32"}, []string{"34.203.213.32/28"}},
		{`{name: cloudflare, family: ipv6}`, []string{"2a06:98c0::/29"}, []string{"104.16.0.0/13"}},
	} {
		src, err := Factory.New(spec(t, tt.opts), env)
		if err != nil {
			t.Fatal(err)
		}
		r := src.Resolve(context.Background())
		if r.Err != nil {
			t.Fatalf("%s: %v", tt.opts, r.Err)
		}
		got := map[string]bool{}
		for _, a := range r.Addresses {
			got[a.Prefix.String()] = true
		}
		for _, p := range tt.has {
			if !got[p] {
				t.Errorf("%s: lacks %s", tt.opts, p)
			}
		}
		for _, p := range tt.lacks {
			if got[p] {
				t.Errorf("%s: has %s", tt.opts, p)
			}
		}
	}
}

// A preset's default limits admit everything its sample publishes, and
// no more than they must: the broadest prefix of the sample sits at the
// limit or within two bits of it.
func TestPresetLimitsFitTheVendor(t *testing.T) {
	for _, name := range Names() {
		p := Presets[name]
		widest := map[bool]int{true: 33, false: 129}
		for u, file := range samples {
			if !strings.Contains(presetOf(t, u), name) {
				continue
			}
			l := List{URL: u, Format: "json", JQ: `.. | strings | select(test("^[0-9a-f:.]+/[0-9]+$"))`}
			if strings.HasSuffix(file, ".txt") {
				l.Format = "text"
			}
			if strings.Contains(file, "snapshot") {
				l.JQ = ".[]"
			}
			for _, pfx := range jqYields(t, filepath.Join(presetsDir, file), l) {
				v4 := pfx.Addr().Is4()
				widest[v4] = min(widest[v4], pfx.Bits())
			}
		}
		limits := plan.DefaultLimits
		if p.MinIPv4 > 0 {
			limits.MinIPv4Bits = p.MinIPv4
		}
		if p.MinIPv6 > 0 {
			limits.MinIPv6Bits = p.MinIPv6
		}
		if widest[true] < limits.MinIPv4Bits || widest[false] < limits.MinIPv6Bits {
			t.Errorf("%s: sample has /%d (v4) and /%d (v6), limits /%d and /%d refuse them", name, widest[true], widest[false], limits.MinIPv4Bits, limits.MinIPv6Bits)
		}
		if p.MinIPv4 > 0 && widest[true]-p.MinIPv4 > 2 {
			t.Errorf("%s: min_ipv4_prefix /%d opens far wider than its widest /%d", name, p.MinIPv4, widest[true])
		}
	}
}

// presetOf names the preset that fetches u, by its host.
func presetOf(t *testing.T, u string) string {
	t.Helper()
	for _, c := range cases {
		lists, err := Lists(spec(t, c))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range lists {
			if l.URL == u {
				return strings.Fields(strings.Trim(c, "{}"))[1]
			}
		}
	}
	return ""
}

// Mistakes are one line naming the spec and what is valid.
func TestPresetMistakes(t *testing.T) {
	for _, tt := range []struct{ opts, want string }{
		{`{name: awz}`, `vendor "awz": unknown preset (known: atlassian, aws, aws-cloudfront, cloudflare, datadog, fastly, github, google, grafana, hcp-terraform, intercom, oracle, pagerduty, stripe)`},
		{`{service: EC2}`, `vendor: missing name`},
		{`{name: aws, servce: EC2}`, `vendor aws: unknown filter "servce" (filters: service, region, network_border_group; other keys: type, until, name, max_bytes, min_interval, backoff_after, max_backoff)`},
		{`{name: github}`, `vendor github: filter keys is required`},
		{`{name: github, keys: hookz}`, `vendor github: keys: "hookz": want hooks, web`},
		{`{name: aws, region: "us-east-1\" or true"}`, `not a plain name`},
		{`{name: aws, region: []}`, `region: empty list`},
		{`{name: aws, region: {a: b}}`, `want a string or a list of strings`},
		{`{name: google, scope: us-central1}`, `scope and service filter cloud.json only`},
		{`{name: aws, min_interval: -1s}`, `min_interval -1s is negative`},
		{`{name: aws, max_bytes: -1}`, `max_bytes -1 is negative`},
		{`{name: aws, min_interval: soon}`, `min_interval`},
		{`{name: aws, token: createDate}`, `unknown filter "token"`},
	} {
		_, err := Factory.New(spec(t, tt.opts), source.Env{HTTPClient: func() (*http.Client, error) { return http.DefaultClient, nil }})
		if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") || !strings.HasPrefix(err.Error(), "test ") {
			t.Errorf("%s: %v, want one line containing %q", tt.opts, err, tt.want)
		}
	}
}

// The option table of docs/sources/vendor.md is generated from Options:
// its keys are exactly the keys parse takes besides filters, so the page
// lists no key the source refuses (token is the preset's) and none it
// takes goes unlisted.
func TestOptionsAreTheGeneralKeys(t *testing.T) {
	var keys []string
	typ := reflect.TypeOf(Factory.Options())
	for i := range typ.NumField() {
		name, _, _ := strings.Cut(typ.Field(i).Tag.Get("yaml"), ",")
		keys = append(keys, name)
	}
	if diff := cmp.Diff(generalKeys, keys); diff != "" {
		t.Errorf("keys of Options (-generalKeys +Options):\n%s", diff)
	}
}

// The limits lookup the config uses reads the preset's name.
func TestSpecLimits(t *testing.T) {
	if v4, v6, ok := SpecLimits(spec(t, `{name: google}`)); !ok || v4 != 10 || v6 != 28 {
		t.Errorf("google: %d %d %v", v4, v6, ok)
	}
	if _, _, ok := SpecLimits(spec(t, `{name: stripe, list: api}`)); ok {
		t.Error("stripe has no limits of its own")
	}
}

// A preset records its vendor's change token: AWS's list served again
// with an older syncToken (a stale mirror) fails the source, naming it.
func TestPresetChangeTokenBackwards(t *testing.T) {
	sample, err := os.ReadFile(filepath.Join(presetsDir, "aws-ip-ranges.json"))
	if err != nil {
		t.Fatal(err)
	}
	var body atomic.Value
	body.Store(sample)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write(body.Load().([]byte))
	}))
	t.Cleanup(srv.Close)
	tr := srv.Client().Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.ServerName = "example.com"
	tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, srv.Listener.Addr().String())
	}
	client := &http.Client{Transport: tr}
	env := source.Env{HTTPClient: func() (*http.Client, error) { return client, nil }, Fetches: state.NewFetches()}
	src, err := Factory.New(spec(t, `{name: aws, service: S3}`), env)
	if err != nil {
		t.Fatal(err)
	}
	if r := src.Resolve(context.Background()); r.Err != nil {
		t.Fatal(r.Err)
	}
	body.Store(bytes.Replace(sample, []byte(`"syncToken": "1764806593"`), []byte(`"syncToken": "1764000000"`), 1))
	r := src.Resolve(context.Background())
	if r.Err == nil || !strings.HasPrefix(r.Err.Error(), "vendor aws (service=S3): ") || !strings.Contains(r.Err.Error(), `syncToken went back from "1764806593" to "1764000000"`) {
		t.Fatalf("older list: %v", r.Err)
	}
}

// A preset whose lists the vendor retires warns on every run, naming the
// date and what replaces them, and still reads the lists until then.
func TestPresetSunsetWarns(t *testing.T) {
	client := vendorsServer(t)
	env := source.Env{HTTPClient: func() (*http.Client, error) { return client, nil }}
	var sunset []string
	for _, name := range Names() {
		if Presets[name].Sunset != "" {
			sunset = append(sunset, name)
			if _, err := time.Parse(time.DateOnly, Presets[name].Sunset); err != nil {
				t.Errorf("%s: sunset %q: %v", name, Presets[name].Sunset, err)
			}
		}
	}
	if !slices.Equal(sunset, []string{"grafana"}) {
		t.Errorf("presets with a sunset: %v, want [grafana]", sunset)
	}
	src, err := Factory.New(spec(t, "{name: grafana, service: [hosted-alerts]}"), env)
	if err != nil {
		t.Fatal(err)
	}
	r := src.Resolve(context.Background())
	if r.Err != nil || len(r.Addresses) == 0 {
		t.Fatalf("the lists still answer until the sunset: %v, %d addresses", r.Err, len(r.Addresses))
	}
	if len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "until 2027-01-31") || !strings.Contains(r.Warnings[0], "Allowlist API") {
		t.Errorf("warnings %q, want one naming 2027-01-31 and the Allowlist API", r.Warnings)
	}
}
