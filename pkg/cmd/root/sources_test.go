package root_test

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

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/pdsafelist/pdsafelist/pkg/cmd/root"
	"github.com/pdsafelist/pdsafelist/pkg/cmdutil"
	"github.com/pdsafelist/pdsafelist/pkg/config"
	"github.com/pdsafelist/pdsafelist/pkg/resolution"
	"github.com/pdsafelist/pdsafelist/pkg/source"
	"github.com/pdsafelist/pdsafelist/pkg/source/httplist"
)

// samples maps each vendor URL in docs/sources.example.yaml to the sample
// of its format in testdata/vendors.
var samples = map[string]string{
	"https://ip-ranges.amazonaws.com/ip-ranges.json": "aws-ip-ranges.json",
	"https://api.github.com/meta":                    "github-meta.json",
	"https://www.gstatic.com/ipranges/goog.json":     "google-goog.json",
	"https://ip-ranges.atlassian.com/":               "atlassian-ip-ranges.json",
	"https://www.cloudflare.com/ips-v4":              "cloudflare-ips-v4.txt",
	"https://www.cloudflare.com/ips-v6":              "cloudflare-ips-v6.txt",
	"https://stripe.com/files/ips/ips_webhooks.txt":  "stripe-ips-webhooks.txt",
	"/etc/pdsafelist/partners.txt":                   "partners.txt",
}

// want is what each example set allows, read by hand from the samples.
var want = map[string][]string{
	// EC2 in us-east-1 only: not AMAZON, not us-west-2, not health checks.
	"aws_ec2_use1": {"15.230.39.0/24", "44.192.0.0/11", "2600:1f18::/33"},
	"github_hooks": {"140.82.112.0/20", "143.55.64.0/20", "185.199.108.0/22", "192.30.252.0/22", "2606:50c0::/32", "2a0a:a440::/29"},
	// goog.json as Google published it: nothing in it merges.
	"google": {
		"8.8.4.0/24", "8.8.8.0/24", "8.34.208.0/20", "8.35.192.0/20", "23.236.48.0/20", "23.251.128.0/19",
		"34.0.0.0/15", "34.2.0.0/16", "34.3.0.0/23", "34.3.3.0/24", "34.3.4.0/24", "34.3.8.0/21",
		"34.3.16.0/20", "34.3.32.0/19", "34.3.64.0/18", "34.4.0.0/14", "34.8.0.0/13", "34.16.0.0/12",
		"34.32.0.0/11", "34.64.0.0/10", "34.128.0.0/10", "35.184.0.0/13", "35.192.0.0/14", "35.196.0.0/15",
		"35.198.0.0/16", "35.199.0.0/17", "35.199.128.0/18", "35.200.0.0/13", "35.208.0.0/12", "35.224.0.0/12",
		"35.240.0.0/13", "64.15.112.0/20", "64.233.160.0/19", "66.22.228.0/23", "66.102.0.0/20", "66.249.64.0/19",
		"70.32.128.0/19", "72.14.192.0/18", "74.125.0.0/16", "104.154.0.0/15", "104.196.0.0/14", "104.237.160.0/19",
		"107.167.160.0/19", "107.178.192.0/18", "108.59.80.0/20", "108.170.192.0/18", "108.177.0.0/17", "130.211.0.0/16",
		"142.250.0.0/15", "146.148.0.0/17", "162.216.148.0/22", "162.222.176.0/21", "172.110.32.0/21", "172.217.0.0/16",
		"172.253.0.0/16", "173.194.0.0/16", "173.255.112.0/20", "192.158.28.0/22", "192.178.0.0/15", "193.186.4.0/24",
		"199.36.154.0/23", "199.36.156.0/24", "199.192.112.0/22", "199.223.232.0/21", "207.223.160.0/20", "208.65.152.0/22",
		"208.68.108.0/22", "208.81.188.0/22", "208.117.224.0/19", "209.85.128.0/17", "216.58.192.0/19", "216.73.80.0/20",
		"216.239.32.0/19", "2001:4860::/32", "2404:6800::/32", "2404:f340::/32", "2600:1900::/28", "2606:73c0::/32",
		"2607:f8b0::/32", "2620:11a:a000::/40", "2620:120:e000::/40", "2800:3f0::/32", "2a00:1450::/32", "2c0f:fb50::/32",
	},
	// Egress ranges that serve Jira; not Bitbucket's, not ingress-only.
	"atlassian_jira": {"13.52.5.96/28", "18.184.99.224/28", "2401:1d80:3000::/36"},
	"cloudflare": {
		"103.21.244.0/22", "103.22.200.0/22", "103.31.4.0/22", "104.16.0.0/13", "104.24.0.0/14", "108.162.192.0/18",
		"131.0.72.0/22", "141.101.64.0/18", "162.158.0.0/15", "172.64.0.0/13", "173.245.48.0/20", "188.114.96.0/20",
		"190.93.240.0/20", "197.234.240.0/22", "198.41.128.0/17", "2400:cb00::/32", "2405:8100::/32", "2405:b500::/32",
		"2606:4700::/32", "2803:f800::/32", "2a06:98c0::/29", "2c0f:f248::/32",
	},
	"stripe_webhooks": {"3.18.12.63/32", "3.130.192.231/32", "13.235.14.237/32", "18.211.135.69/32", "35.154.171.200/32", "54.187.174.169/32"},
	"partners":        {"44.231.12.0/28", "54.1.2.3/32", "54.86.50.139/32", "2001:db9:40::/48"},
}

func vendorServer(t *testing.T) (string, *http.Client) {
	t.Helper()
	srv := httptest.NewTLSServer(http.StripPrefix("/", http.FileServer(http.Dir(filepath.Join("..", "..", "..", "testdata", "vendors")))))
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	client, err := httplist.NewClient(httplist.ClientOptions{CAFile: ca, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return srv.URL, client
}

// retarget points a spec at a sample: an http spec at the TLS test server
// serving it, a file spec at its path; as says which of the two to build,
// so every sample goes through both real sources.
func retarget(t *testing.T, spec source.Spec, as, base string) source.Spec {
	t.Helper()
	var opts map[string]any
	if err := spec.Options.Decode(&opts); err != nil {
		t.Fatal(err)
	}
	key := map[string]string{"http": "url", "file": "path"}[spec.Type]
	if key == "" {
		return spec
	}
	sample, ok := samples[opts[key].(string)]
	if !ok {
		t.Fatalf("%s: no sample for %v", spec.Origin, opts[key])
	}
	delete(opts, "url")
	delete(opts, "path")
	spec.Type = as
	if as == "http" {
		opts["url"] = base + "/" + url.PathEscape(sample)
	} else {
		opts["path"] = filepath.Join("..", "..", "..", "testdata", "vendors", sample)
	}
	if err := spec.Options.Encode(opts); err != nil {
		t.Fatal(err)
	}
	return spec
}

// TestVendorExamples loads docs/sources.example.yaml with the real config
// loader and resolves every set through the real registry, once with each
// list served over HTTPS and once read from disk, against the samples of
// each vendor's documented format.
func TestVendorExamples(t *testing.T) {
	f, err := config.Load(filepath.Join("..", "..", "..", "docs", "sources.example.yaml"), true)
	if err != nil {
		t.Fatal(err)
	}
	s := config.Defaults().Apply(f)
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	sets, err := s.SelectedSets()
	if err != nil {
		t.Fatal(err)
	}
	if len(sets) != len(want) {
		t.Errorf("example has %d sets, test expects %d", len(sets), len(want))
	}
	base, client := vendorServer(t)
	env := source.Env{
		MaxBytes:   s.HTTP.MaxBytes,
		HTTPClient: func() (*http.Client, error) { return client, nil },
		Resolver:   func() (source.NameResolver, error) { t.Fatal("no DNS in the examples"); return nil, nil },
	}
	reg := root.SourceRegistry()
	for _, as := range []string{"http", "file"} {
		built := map[string][]source.Source{}
		for _, set := range sets {
			for _, spec := range set.SourceSpecs() {
				src, err := reg.Build(retarget(t, spec, as, base), env)
				if err != nil {
					t.Fatalf("%s: %v", as, err)
				}
				built[set.Name] = append(built[set.Name], src)
			}
		}
		res := resolution.Run(context.Background(), sets, func(spec config.SetSpec) []source.Source { return built[spec.Name] }, s.Limits)
		for _, r := range res {
			if r.Err != nil {
				t.Errorf("%s %s: %v", as, r.Spec.Name, r.Err)
				continue
			}
			var w []netip.Prefix
			for _, p := range want[r.Spec.Name] {
				w = append(w, netip.MustParsePrefix(p))
			}
			if diff := cmp.Diff(w, r.Desired.Prefixes, cmpopts.EquateComparable(netip.Prefix{}), cmpopts.SortSlices(func(a, b netip.Prefix) bool { return a.Compare(b) < 0 })); diff != "" {
				t.Errorf("%s %s (-want +got):\n%s", as, r.Spec.Name, diff)
			}
		}
	}
}

// resolve and sync describe every registered source type, from the
// registry, so a new type documents itself.
func TestHelpListsSourceTypes(t *testing.T) {
	reg := root.SourceRegistry()
	for _, cmd := range []string{"resolve", "sync"} {
		streams, out, _ := cmdutil.Test()
		if code := root.Execute(context.Background(), root.NewFactory(streams), []string{cmd, "--help"}); code != 0 {
			t.Fatalf("%s --help: exit %d", cmd, code)
		}
		for _, typ := range reg.Types() {
			if !strings.Contains(out.String(), "\n  "+reg[typ].Help+"\n") {
				t.Errorf("%s --help does not describe source type %s", cmd, typ)
			}
		}
		if !strings.Contains(out.String(), "sources:") {
			t.Errorf("%s --help does not mention the sources: list", cmd)
		}
	}
}

// The sources page's first example is a valid config whose every source
// builds.
func TestReadmeSourcesExample(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "..", "docs", "sources", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "# Sources\n")
	_, block, ok2 := strings.Cut(section, "```yaml\n")
	block, _, ok3 := strings.Cut(block, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatal("docs/sources/README.md has no yaml block under # Sources")
	}
	f, err := config.Parse("README", []byte(block))
	if err != nil {
		t.Fatal(err)
	}
	s := config.Defaults().Apply(f)
	s.Sets = []string{"github_hooks"}
	sets, err := s.SelectedSets()
	if err != nil {
		t.Fatal(err)
	}
	env := source.Env{HTTPClient: func() (*http.Client, error) { return http.DefaultClient, nil }}
	var kinds []source.Kind
	for _, spec := range sets[0].SourceSpecs() {
		src, err := root.SourceRegistry().Build(spec, env)
		if err != nil {
			t.Fatal(err)
		}
		kinds = append(kinds, src.Kind())
	}
	if diff := cmp.Diff([]source.Kind{source.KindHTTP, source.KindFile, source.KindStatic}, kinds); diff != "" {
		t.Errorf("README sources (-want +got):\n%s", diff)
	}
}

// The annotated example config's sources all build, and it shows every
// source type: an example that names a bad key teaches the wrong thing.
func TestExampleConfigSourcesBuild(t *testing.T) {
	f, err := config.Load(filepath.Join("..", "..", "..", "testdata", "pdsafelist.yaml"), true)
	if err != nil {
		t.Fatal(err)
	}
	s := config.Defaults().Apply(f)
	sets, err := s.SelectedSets()
	if err != nil {
		t.Fatal(err)
	}
	env := source.Env{
		HTTPClient: func() (*http.Client, error) { return http.DefaultClient, nil },
		Resolver:   func() (source.NameResolver, error) { return nameResolver{}, nil },
	}
	reg := root.SourceRegistry()
	types := map[string]bool{}
	for _, set := range sets {
		for _, spec := range set.SourceSpecs() {
			if _, err := reg.Build(spec, env); err != nil {
				t.Error(err)
			}
			if strings.HasPrefix(spec.Origin, "config ") {
				types[spec.Type] = true
			}
		}
	}
	for _, want := range []string{"http", "file"} {
		if !types[want] {
			t.Errorf("the example config's sources: list shows no %s source", want)
		}
	}
}

type nameResolver struct{}

func (nameResolver) Source(string) source.Source { return nil }
