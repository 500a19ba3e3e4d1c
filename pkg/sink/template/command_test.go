package template

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/testutil"
)

// "{}" is the new file, beside the old one: not in $TMPDIR, where a
// private /tmp could hide it and relative includes would not resolve.
func TestCheckPathIsBesideTheFile(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	s := newSink(t, Options{Format: "plain", Check: sink.Command{"check", "{}"}})
	var got []string
	s.run = func(_ context.Context, argv []string) ([]byte, error) {
		got = argv
		return nil, nil
	}
	apply(t, s, entries()[:1])
	if len(got) != 2 || filepath.Dir(got[1]) != filepath.Dir(s.opts.Path) || got[1] == s.opts.Path {
		t.Fatalf("check ran as %q; want the new file in %s", got, filepath.Dir(s.opts.Path))
	}
	if !strings.HasPrefix(filepath.Base(got[1]), ".") {
		t.Errorf("new file %s is not hidden", got[1])
	}
}

// check= and reload= take a list of arguments in a config file, so an
// argument may hold spaces; the string form still splits on spaces.
func TestCommandStringOrList(t *testing.T) {
	decode := func(t *testing.T, text string) (Options, error) {
		t.Helper()
		var n yaml.Node
		if err := yaml.Unmarshal([]byte(text), &n); err != nil {
			t.Fatal(err)
		}
		spec, err := sink.Registry{"template": Factory}.FromConfig(n.Content[0], 0)
		if err != nil {
			return Options{}, err
		}
		var o Options
		return o, spec.Decode(&o)
	}
	o, err := decode(t, `{type: template, path: /x, check: ["nginx", "-t", "-g", "pid /run/x.pid;"], reload: nginx -s reload}`)
	if err != nil {
		t.Fatal(err)
	}
	if want := (sink.Command{"nginx", "-t", "-g", "pid /run/x.pid;"}); strings.Join(o.Check, "\x00") != strings.Join(want, "\x00") {
		t.Errorf("check = %q, want %q", o.Check, want)
	}
	if want := (sink.Command{"nginx", "-s", "reload"}); strings.Join(o.Reload, "\x00") != strings.Join(want, "\x00") {
		t.Errorf("reload = %q, want %q", o.Reload, want)
	}
	for _, bad := range []string{`{type: template, path: /x, check: {a: b}}`, `{type: template, path: /x, check: [[a]]}`, `{type: template, path: /x, check: ["", x]}`} {
		if _, err := decode(t, bad); err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: err = %v, want one line", bad, err)
		}
	}
	// Hostile text inside a list item is refused as in a string.
	if _, err := New(Options{Path: "/x", Check: sink.Command{"nginx", "-t\x1b[2J"}}, "", "test"); err == nil {
		t.Error("control character in an argument accepted")
	}
}

// A real HAProxy with a broken configuration: the error shows the
// [ALERT] lines that say what is wrong, not the [NOTICE] with the
// version it prints first, and the old list stays.
func TestHAProxyCheckShowsTheAlert(t *testing.T) {
	testutil.Integration(t, false, "haproxy")
	dir := t.TempDir()
	list := filepath.Join(dir, "pagerduty.lst")
	cfg := filepath.Join(dir, "haproxy.cfg")
	write := func(extra string) {
		t.Helper()
		text := "defaults\n  mode http\n  timeout client 1s\n  timeout server 1s\n  timeout connect 1s\n" +
			"frontend web\n  bind unix@" + filepath.Join(dir, "web.sock") + "\n" +
			"  acl pagerduty src -f " + list + "\n  http-request deny unless pagerduty\n" + extra
		if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("")
	// The check reads the real configuration, which includes the list:
	// the way the docs show it (not haproxy -c -f {}).
	s := newSink(t, Options{Path: list, Format: "haproxy", Check: sink.Command{"haproxy", "-c", "-f", cfg}})
	ingress := []plan.Entry{entries()[2], entries()[3]}
	apply(t, s, ingress[:1])
	old, _ := os.ReadFile(list)

	write("  bogus_keyword here\n")
	err := s.Apply(context.Background(), plan.SinkPlan{Add: ingress})
	if err == nil {
		t.Fatal("a broken configuration passed the check")
	}
	msg := err.Error()
	if !strings.Contains(msg, "unknown keyword 'bogus_keyword'") || strings.Contains(msg, "NOTICE") || strings.Contains(msg, "\n") {
		t.Errorf("error %q: want the ALERT naming the bad keyword, on one line, without the notices", msg)
	}
	if now, _ := os.ReadFile(list); string(now) != string(old) {
		t.Errorf("old list not restored:\n%s", now)
	}
}

// A real nginx: an argument with spaces (-g "...; ...;") works in the list
// form, and a failing check shows the [emerg] line.
func TestNginxCheckShowsTheEmerg(t *testing.T) {
	testutil.Integration(t, false, "nginx")
	dir := t.TempDir()
	allow := filepath.Join(dir, "pagerduty.conf")
	conf := filepath.Join(dir, "nginx.conf")
	write := func(extra string) {
		t.Helper()
		text := "events {}\nhttp {\n  access_log off;\n  client_body_temp_path " + dir + "/body;\n  proxy_temp_path " + dir + "/proxy;\n" +
			"  fastcgi_temp_path " + dir + "/fcgi;\n  uwsgi_temp_path " + dir + "/uwsgi;\n  scgi_temp_path " + dir + "/scgi;\n" +
			"  server {\n    listen unix:" + dir + "/web.sock;\n    location / {\n      include " + allow + ";\n      deny all;\n" + extra + "    }\n  }\n}\n"
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("")
	check := sink.Command{"nginx", "-t", "-q", "-c", conf, "-e", "stderr", "-g", "pid " + dir + "/nginx.pid; error_log stderr;"}
	s := newSink(t, Options{Path: allow, Format: "nginx", Check: check})
	ingress := []plan.Entry{entries()[2], entries()[3]}
	apply(t, s, ingress[:1])
	old, _ := os.ReadFile(allow)
	if !strings.Contains(string(old), "allow ") {
		t.Fatalf("nginx list without an allow line:\n%s", old)
	}

	write("      bogus_directive on;\n")
	err := s.Apply(context.Background(), plan.SinkPlan{Add: ingress})
	if err == nil {
		t.Fatal("a broken configuration passed the check")
	}
	if msg := err.Error(); !strings.Contains(msg, `[emerg]`) || !strings.Contains(msg, `unknown directive "bogus_directive"`) || strings.Contains(msg, "\n") {
		t.Errorf("error %q: want the [emerg] line naming the directive, on one line", msg)
	}
	if now, _ := os.ReadFile(allow); string(now) != string(old) {
		t.Errorf("old file not restored:\n%s", now)
	}
}
