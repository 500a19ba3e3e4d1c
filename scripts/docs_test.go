package scripts

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"

	"go.yaml.in/yaml/v3"

	"github.com/pdsafelist/pdsafelist/pkg/awsconfig"
	"github.com/pdsafelist/pdsafelist/pkg/cmd/root"
	"github.com/pdsafelist/pdsafelist/pkg/cmdutil"
	"github.com/pdsafelist/pdsafelist/pkg/config"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/source"
	"github.com/pdsafelist/pdsafelist/pkg/testutil"
)

// The README is a front page, not the reference, and keeps the commands
// .ci/run greps for.
func TestReadmeIsAFrontPage(t *testing.T) {
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(data), "\n"); n > 300 {
		t.Errorf("README.md has %d lines; keep it under 300 and move reference material to docs/", n)
	}
	for _, want := range []string{"go test -race -count=1 ./...", "bash scripts/demo.sh"} {
		if !strings.Contains(string(data), want) {
			t.Errorf("README.md lacks %q", want)
		}
	}
}

// block is one fenced code block of a Markdown file.
type block struct {
	file, lang, text string
	line             int
}

func (b block) String() string { return fmt.Sprintf("%s:%d (%s)", b.file, b.line, b.lang) }

var fence = regexp.MustCompile("^```([a-z]*)\\s*$")

// docBlocks returns the code blocks of the README and every page under
// docs/.
func docBlocks(t *testing.T) []block {
	t.Helper()
	files := []string{"../README.md"}
	err := filepath.WalkDir("../docs", func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".md") {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var out []block
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var cur *block
		var lines []string
		for i, l := range strings.Split(string(data), "\n") {
			trimmed := strings.TrimSpace(l)
			if cur == nil {
				if m := fence.FindStringSubmatch(trimmed); m != nil {
					cur = &block{file: strings.TrimPrefix(f, "../"), lang: m[1], line: i + 1}
					lines = nil
				}
				continue
			}
			if trimmed == "```" {
				cur.text = strings.Join(lines, "\n") + "\n"
				out = append(out, *cur)
				cur = nil
				continue
			}
			lines = append(lines, l)
		}
	}
	return out
}

// configKeys are the config file's top-level keys: a yaml block whose keys
// are all among them is a config, checked as one.
func configKeys() map[string]bool {
	keys := map[string]bool{}
	for _, k := range []string{"sinks", "catalog"} {
		keys[k] = true
	}
	var m map[string]any
	data, _ := yaml.Marshal(config.File{})
	_ = yaml.Unmarshal(data, &m)
	for k := range m {
		keys[k] = true
	}
	return keys
}

// Every YAML block in the README and docs/ parses, and every one that is a
// pdsafelist config loads strictly, validates, opens every sink it shows
// and builds every source of every set: an example that teaches a typo or
// a refused option fails here.
func TestDocConfigExamples(t *testing.T) {
	awsEnv(t)
	keys := configKeys()
	configs := 0
	for _, b := range docBlocks(t) {
		if b.lang != "yaml" {
			continue
		}
		var top map[string]any
		if err := yaml.Unmarshal([]byte(b.text), &top); err != nil {
			// Multi-document manifests parse one by one.
			dec := yaml.NewDecoder(strings.NewReader(b.text))
			for {
				var v any
				if err := dec.Decode(&v); err != nil {
					if err.Error() != "EOF" {
						t.Errorf("%s: %v", b, err)
					}
					break
				}
			}
			continue
		}
		isConfig := len(top) > 0
		for k := range top {
			isConfig = isConfig && keys[k]
		}
		if !isConfig {
			continue
		}
		configs++
		checkConfig(t, b)
	}
	if configs < 10 {
		t.Errorf("only %d config examples found; the block parser is broken", configs)
	}
}

// awsEnv is the environment the AWS examples assume: a region and the
// "prod" profile they name. Opening a sink needs no real credentials.
func awsEnv(t *testing.T) {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(cfg, []byte("[profile prod]\nregion = us-east-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "example")
	t.Setenv("AWS_CONFIG_FILE", cfg)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_PROFILE", "")
}

type stubResolver struct{}

func (stubResolver) Source(string) source.Source { return nil }

func checkConfig(t *testing.T, b block) {
	t.Helper()
	f, err := config.Parse(b.String(), []byte(b.text))
	if err != nil {
		t.Errorf("%s: %v", b, err)
		return
	}
	s := config.Defaults().Apply(f)
	if err := s.Validate(); err != nil {
		t.Errorf("%s: %v", b, err)
		return
	}
	reg := root.Registry()
	for i := range s.Sinks {
		spec, err := reg.FromConfig(&s.Sinks[i], i)
		if err == nil {
			_, err = reg.Open(spec, sink.Env{OwnerID: s.OwnerID, AWS: &awsconfig.Loader{}})
		}
		if err != nil {
			t.Errorf("%s: sink %d: %v", b, i, err)
		}
	}
	sets, err := s.SelectedSets()
	if err != nil {
		t.Errorf("%s: %v", b, err)
		return
	}
	env := source.Env{
		HTTPClient: func() (*http.Client, error) { return http.DefaultClient, nil },
		Resolver:   func() (source.NameResolver, error) { return stubResolver{}, nil },
	}
	for _, set := range sets {
		for _, spec := range set.SourceSpecs() {
			if _, err := root.SourceRegistry().Build(spec, env); err != nil {
				t.Errorf("%s: set %s: %v", b, set.Name, err)
			}
		}
	}
}

// commands returns the pdsafelist command lines of a shell or cron block,
// continuation lines joined, comments and redirections dropped, split as
// the shell would (quotes; no expansion).
func commands(b block) [][]string {
	var out [][]string
	text := strings.ReplaceAll(b.text, "\\\n", " ")
	for _, line := range strings.Split(text, "\n") {
		words := shellWords(line)
		for i, w := range words {
			if w == "#" || strings.HasPrefix(w, "#") && i > 0 {
				words = words[:i]
				break
			}
		}
		start := -1
		for i, w := range words {
			if w == "pdsafelist" || w == "./cmd/pdsafelist" || w == "/usr/local/bin/pdsafelist" {
				start = i + 1
				break
			}
		}
		if start < 0 || (start > 1 && words[0] != "go" && b.lang != "cron" && !strings.HasPrefix(words[0], "*/")) {
			continue
		}
		var args []string
		for _, w := range words[start:] {
			if strings.HasPrefix(w, ">") || strings.HasPrefix(w, "2>") || w == "||" || w == "|" || w == "&&" {
				break
			}
			args = append(args, w)
		}
		out = append(out, args)
	}
	return out
}

// shellWords splits a line as sh does for quotes, without expansion.
func shellWords(line string) []string {
	var words []string
	var cur strings.Builder
	in, quote := false, rune(0)
	for _, r := range line {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '\'' || r == '"':
			quote, in = r, true
		case r == ' ' || r == '\t':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words
}

// Every pdsafelist command line in the README and docs/ names a real
// command and real flags, and every --sink it gives parses and opens: the
// examples people paste must not fail on a flag or an option.
func TestDocCommandExamples(t *testing.T) {
	awsEnv(t)
	reg := root.Registry()
	n := 0
	for _, b := range docBlocks(t) {
		if b.lang != "sh" && b.lang != "cron" && b.lang != "" {
			continue
		}
		for _, args := range commands(b) {
			if len(args) > 0 && strings.Contains(strings.Join(args, " "), "$") {
				continue // expanded by the shell: not checkable as written
			}
			n++
			streams, _, _ := cmdutil.Test()
			cmd := root.NewCmdRoot(root.NewFactory(streams))
			cmd.InitDefaultCompletionCmd()
			sub, rest, err := cmd.Find(args)
			if err != nil || sub == cmd && len(args) > 0 && !strings.HasPrefix(args[0], "-") {
				t.Errorf("%s: pdsafelist %s: no such command", b, strings.Join(args, " "))
				continue
			}
			if err := sub.ParseFlags(rest); err != nil {
				t.Errorf("%s: pdsafelist %s: %v", b, strings.Join(args, " "), err)
				continue
			}
			specs, _ := sub.Flags().GetStringArray("sink")
			for _, s := range specs {
				spec, err := reg.ParseFlag(s)
				if err == nil {
					_, err = reg.Open(spec, sink.Env{AWS: &awsconfig.Loader{}})
				}
				if err != nil {
					t.Errorf("%s: --sink %s: %v", b, s, err)
				}
			}
		}
	}
	if n < 15 {
		t.Errorf("only %d command examples found; the block parser is broken", n)
	}
}

// exampleSink returns the --sink of the template page's example for the
// given format, and the code block of the program's configuration.
func exampleSink(t *testing.T, format, lang string) (string, string) {
	t.Helper()
	var spec, conf string
	for _, b := range docBlocks(t) {
		if b.file != "docs/sinks/template.md" {
			continue
		}
		if b.lang == lang && conf == "" {
			conf = b.text
		}
		for _, args := range commands(b) {
			for i, a := range args {
				if a == "--sink" && i+1 < len(args) && strings.Contains(args[i+1], "format="+format) && spec == "" {
					spec = args[i+1]
				}
			}
		}
	}
	if spec == "" || conf == "" {
		t.Fatalf("docs/sinks/template.md has no %s example (--sink with format=%s and a %s block)", format, format, lang)
	}
	return spec, conf
}

// localize moves an example's paths under dir and changes its commands for
// a test: the check gets argv (inserted after the program name) that points
// it at dir, and the reload goes, as no daemon runs here.
func localize(t *testing.T, spec, etc, dir string, checkArgs ...string) string {
	t.Helper()
	spec = strings.ReplaceAll(spec, etc, dir+"/")
	base, query, _ := strings.Cut(spec, "?")
	vals, err := url.ParseQuery(query)
	if err != nil {
		t.Fatal(err)
	}
	check := strings.Fields(vals.Get("check"))
	if len(check) == 0 {
		t.Fatalf("%s: the example has no check", spec)
	}
	vals.Set("check", strings.Join(append(append([]string{check[0]}, checkArgs...), check[1:]...), " "))
	vals.Del("reload")
	return base + "?" + vals.Encode()
}

// syncWebhooks runs pdsafelist sync with the webhooks set from static
// addresses into sinkSpec, and returns the exit code and stderr.
func syncWebhooks(t *testing.T, dir, sinkSpec string, addrs ...string) (int, string) {
	t.Helper()
	cfg := filepath.Join(dir, "pdsafelist.yaml")
	body := fmt.Sprintf("sets: [webhooks]\ncatalog:\n  webhooks:\n    urls: []\n    static: [%s]\n", strings.Join(addrs, ", "))
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	streams, _, errOut := cmdutil.Test()
	code := root.Execute(context.Background(), root.NewFactory(streams),
		[]string{"sync", "-q", "--config", cfg, "--state-dir", filepath.Join(dir, "state"), "--sink", sinkSpec})
	return code, errOut.String()
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// The HAProxy example works as written against the real HAProxy: the sync
// writes the list and `haproxy -c` accepts the configuration that reads it;
// a configuration HAProxy rejects fails the sync and keeps the old list.
// The example this replaced (`haproxy -c -f {}`, the list parsed as a
// configuration) fails every sync.
func TestTemplateHAProxyExample(t *testing.T) {
	testutil.Integration(t, false, "haproxy")
	spec, conf := exampleSink(t, "haproxy", "haproxy")
	dir := t.TempDir()
	conf = strings.ReplaceAll(conf, "/etc/haproxy/", dir+"/")
	conf = regexp.MustCompile(`bind :\d+`).ReplaceAllString(conf, fmt.Sprintf("bind 127.0.0.1:%d", freePort(t)))
	cfgPath := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfgPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	local := localize(t, spec, "/etc/haproxy/", dir)
	if code, errOut := syncWebhooks(t, dir, local, "44.242.69.192", "52.89.71.166"); code != 0 {
		t.Fatalf("sync with the HAProxy example: exit %d\n%s", code, errOut)
	}
	list, err := os.ReadFile(filepath.Join(dir, "pagerduty.lst"))
	if err != nil || !strings.Contains(string(list), "\n44.242.69.192/32\n") {
		t.Fatalf("list: %v\n%s", err, list)
	}
	if out, err := exec.Command("haproxy", "-c", "-f", cfgPath).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c on the example config with the list: %v\n%s", err, out)
	}

	// A broken configuration: the check fails, the old list stays.
	if err := os.WriteFile(cfgPath, []byte(conf+"\nfrontend broken\n    bogus_keyword yes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _ := syncWebhooks(t, dir, local, "54.213.187.133"); code == 0 {
		t.Error("sync passed although haproxy -c rejects the configuration")
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "pagerduty.lst")); string(after) != string(list) {
		t.Errorf("a failed check left a new list:\n%s", after)
	}

	// The old example: the list itself as a configuration never passes.
	old := filepath.Join(t.TempDir(), "old")
	if err := os.MkdirAll(old, 0o755); err != nil {
		t.Fatal(err)
	}
	oldSpec := "template:" + old + "/pagerduty.lst?format=haproxy&sets=webhooks&check=haproxy+-c+-f+{}"
	if code, errOut := syncWebhooks(t, old, oldSpec, "44.242.69.192"); code == 0 {
		t.Errorf("haproxy -c -f {} on the list passed; the test no longer shows why the example changed\n%s", errOut)
	}
}

// The nginx example works as written against the real nginx: the sync
// writes the include, `nginx -t` accepts the location block that includes
// it, and a configuration nginx rejects fails the sync and keeps the old
// file.
func TestTemplateNginxExample(t *testing.T) {
	testutil.Integration(t, true, "nginx")
	spec, block := exampleSink(t, "nginx", "nginx")
	dir := t.TempDir()
	block = strings.ReplaceAll(block, "/etc/nginx/", dir+"/")
	conf := fmt.Sprintf(`pid %[1]s/nginx.pid;
error_log stderr;
events {}
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    server {
        listen 127.0.0.1:%[2]d;
%[3]s
    }
}
`, dir, freePort(t), block)
	cfgPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(cfgPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	local := localize(t, spec, "/etc/nginx/", dir, "-e", "stderr", "-c", cfgPath)
	if code, errOut := syncWebhooks(t, dir, local, "44.242.69.192", "52.89.71.166"); code != 0 {
		t.Fatalf("sync with the nginx example: exit %d\n%s", code, errOut)
	}
	inc, err := os.ReadFile(filepath.Join(dir, "pagerduty-webhooks.conf"))
	if err != nil || !strings.Contains(string(inc), "allow 44.242.69.192/32;") {
		t.Fatalf("include: %v\n%s", err, inc)
	}
	if out, err := exec.Command("nginx", "-e", "stderr", "-t", "-c", cfgPath).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t on the example block with the include: %v\n%s", err, out)
	}

	if err := os.WriteFile(cfgPath, []byte(strings.Replace(conf, "events {}", "events {}\nbogus_directive on;", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _ := syncWebhooks(t, dir, local, "54.213.187.133"); code == 0 {
		t.Error("sync passed although nginx -t rejects the configuration")
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "pagerduty-webhooks.conf")); string(after) != string(inc) {
		t.Errorf("a failed check left a new include:\n%s", after)
	}
}

// Other helpers' pages, linked before they land on main.
var pendingPages = map[string]bool{
	"docs/kubernetes.md": true, "docs/kubernetes-running.md": true,
	"docs/benchmarks-nftables.md": true, "docs/benchmarks-iptables.md": true,
}

var mdLink = regexp.MustCompile(`\]\(([^)#\s]+)(#[^)\s]*)?\)`)

// Every relative link of the README and docs/ reaches a file, and every
// #anchor a heading of the page it names.
func TestDocLinks(t *testing.T) {
	files := []string{"../README.md"}
	_ = filepath.WalkDir("../docs", func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".md") {
			files = append(files, p)
		}
		return err
	})
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range mdLink.FindAllStringSubmatch(string(data), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			path := filepath.Join(filepath.Dir(f), target)
			repoPath, _ := filepath.Rel("..", path)
			body, err := os.ReadFile(path)
			if err != nil {
				if _, statErr := os.Stat(path); statErr == nil {
					continue // a directory
				}
				if pendingPages[filepath.ToSlash(repoPath)] {
					t.Logf("%s: %s is not here yet", f, target)
					continue
				}
				t.Errorf("%s: link to %s: no such file", f, target)
				continue
			}
			if m[2] != "" && strings.HasSuffix(path, ".md") && !hasAnchor(string(body), m[2][1:]) {
				t.Errorf("%s: link to %s%s: no such heading", f, target, m[2])
			}
		}
	}
}

// hasAnchor says whether a Markdown page has a heading GitHub would give
// the anchor.
func hasAnchor(page, anchor string) bool {
	for _, l := range strings.Split(page, "\n") {
		if !strings.HasPrefix(l, "#") {
			continue
		}
		h := strings.ToLower(strings.TrimSpace(strings.TrimLeft(l, "#")))
		var b strings.Builder
		for _, r := range h {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				b.WriteRune(r)
			}
		}
		if b.String() == anchor {
			return true
		}
	}
	return false
}
