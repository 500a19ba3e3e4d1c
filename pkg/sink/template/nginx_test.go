package template

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pdsafelist/pdsafelist/pkg/oneline"
	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/sink/sinktest"
	"github.com/pdsafelist/pdsafelist/pkg/testutil"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/netns"
)

// nginxServer is Debian's nginx in a network namespace, serving 200 to
// whoever the include at allow lets in and 403 to anyone else.
type nginxServer struct {
	t             *testing.T
	p             *netns.Pair
	dir, allow    string
	check, reload string
}

const nginxPort = 8080

// startNginx starts nginx with an empty include, then removes the include
// so the first sync creates it, as on a fresh install.
func startNginx(t *testing.T, clients ...netip.Addr) *nginxServer {
	t.Helper()
	testutil.Integration(t, true, "ip", "nginx")
	p := netns.New(t, clients...)
	dir := t.TempDir()
	allow := filepath.Join(dir, "pagerduty.conf")
	conf := filepath.Join(dir, "nginx.conf")
	www := filepath.Join(dir, "www")
	if err := os.MkdirAll(www, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(www, "index.html"), []byte("ok\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := strings.NewReplacer("DIR", dir, "ALLOW", allow, "WWW", www, "PORT", strconv.Itoa(nginxPort)).Replace(`user root;
pid DIR/nginx.pid;
error_log DIR/error.log;
events {}
http {
	access_log off;
	client_body_temp_path DIR/body;
	proxy_temp_path DIR/proxy;
	fastcgi_temp_path DIR/fastcgi;
	uwsgi_temp_path DIR/uwsgi;
	scgi_temp_path DIR/scgi;
	server {
		listen PORT;
		listen [::]:PORT;
		location / {
			include ALLOW;
			deny all;
			root WWW;
		}
	}
}
`)
	if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	// nginx needs the file to start; the first sync writes it.
	if err := os.WriteFile(allow, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ip", "netns", "exec", p.Server, "nginx", "-c", conf).CombinedOutput(); err != nil {
		t.Fatalf("start nginx: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "exec", p.Server, "nginx", "-s", "stop", "-c", conf).Run() })
	if err := os.Remove(allow); err != nil {
		t.Fatal(err)
	}
	inNS := "ip netns exec " + p.Server + " "
	return &nginxServer{t: t, p: p, dir: dir, allow: allow,
		check: inNS + "nginx -t -q -c " + conf, reload: inNS + "nginx -s reload -c " + conf}
}

func (n *nginxServer) status(src netip.Addr) int {
	dst := netns.Server4
	if src.Is6() {
		dst = netns.Server6
	}
	code, err := n.p.HTTPStatus(src, dst, nginxPort, "/", 2*time.Second)
	if err != nil {
		return -1
	}
	return code
}

// expect waits for the answers want: a reload swaps workers
// asynchronously.
func (n *nginxServer) expect(when string, want map[netip.Addr]int) {
	n.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok := true
		for src, code := range want {
			if n.status(src) != code {
				ok = false
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			for src, code := range want {
				n.t.Errorf("%s: %s gets %d, want %d", when, src, n.status(src), code)
			}
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// hold checks the answers stay want for d: a file that should not have
// been loaded would be within that time.
func (n *nginxServer) hold(when string, want map[netip.Addr]int, d time.Duration) {
	n.t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		for src, code := range want {
			if got := n.status(src); got != code {
				n.t.Errorf("%s: %s gets %d, want %d", when, src, got, code)
				return
			}
		}
	}
}

func webhookEntries(addrs ...string) []plan.Entry {
	var es []plan.Entry
	for _, a := range addrs {
		ad := netip.MustParseAddr(a)
		es = append(es, plan.Entry{Set: "webhooks", Prefix: netip.PrefixFrom(ad, ad.BitLen()), Direction: plan.Ingress, Protocol: plan.TCP, Port: 443})
	}
	return es
}

func syncTo(s *Sink, es []plan.Entry) error {
	_, err := sinktest.Sync(context.Background(), sink.Step{Sink: s, Force: true}, []plan.DesiredSet{desired(es)})
	return err
}

// Debian's nginx in a network namespace reads the allow-list: after a sync
// and a reload, a safelisted source gets 200 and another 403; a change of
// addresses swaps them; a file nginx rejects is never put in place and the
// running nginx keeps serving.
func TestNginxAllowListWithRealTraffic(t *testing.T) {
	var (
		a4 = netip.MustParseAddr("193.0.2.10")
		b4 = netip.MustParseAddr("193.0.2.20")
		a6 = netip.MustParseAddr("2001:db9::10")
	)
	n := startNginx(t, a4, b4, a6)
	s := newSink(t, Options{Path: n.allow, Format: "nginx", Check: strings.Fields(n.check), Reload: strings.Fields(n.reload)})

	if err := syncTo(s, webhookEntries("193.0.2.10", "2001:db9::10")); err != nil {
		t.Fatal(err)
	}
	n.expect("after the first sync", map[netip.Addr]int{a4: 200, a6: 200, b4: 403})

	if err := syncTo(s, webhookEntries("193.0.2.20")); err != nil {
		t.Fatal(err)
	}
	n.expect("after the addresses changed", map[netip.Addr]int{a4: 403, a6: 403, b4: 200})

	// A template nginx rejects: the check fails, the old file stays and
	// the running nginx is untouched.
	before, _ := os.ReadFile(n.allow)
	bad := filepath.Join(n.dir, "bad.tmpl")
	if err := os.WriteFile(bad, []byte("{{range .Prefixes}}allow {{.}}\n{{end}}"), 0o644); err != nil {
		t.Fatal(err)
	}
	broken, err := New(Options{Path: n.allow, Template: bad, Check: strings.Fields(n.check), Reload: strings.Fields(n.reload)}, "", "test")
	if err != nil {
		t.Fatal(err)
	}
	err = broken.Apply(context.Background(), plan.SinkPlan{Add: webhookEntries("193.0.2.10")})
	if err == nil || !strings.Contains(err.Error(), "check failed") {
		t.Fatalf("a file nginx rejects was accepted: %v", err)
	}
	if after, _ := os.ReadFile(n.allow); string(after) != string(before) {
		t.Errorf("the old file was not kept")
	}
	n.expect("after a rejected file", map[netip.Addr]int{a4: 403, b4: 200})
}

// owner_id "x\nallow all;\n#" once became a line of its own in the
// include; nginx -t accepted it and let everyone in (issue 20 item 4).
// The sink refuses it even when no config validation ran before, writes
// nothing, and nginx keeps denying; an honest sink still works after.
func TestNginxHostileOwnerNeverBecomesALine(t *testing.T) {
	var (
		a4 = netip.MustParseAddr("193.0.2.10")
		b4 = netip.MustParseAddr("193.0.2.20")
	)
	n := startNginx(t, a4, b4)
	o := Options{Path: n.allow, Format: "nginx", Check: strings.Fields(n.check), Reload: strings.Fields(n.reload)}
	const owner = "x\nallow all;\n#"
	s, err := New(o, owner, "--sink template:"+n.allow)
	if err == nil {
		err = syncTo(s, webhookEntries("193.0.2.10"))
	}
	if err == nil {
		data, _ := os.ReadFile(n.allow)
		t.Errorf("owner id %q accepted; the include reads:\n%s", owner, data)
	} else if msg := err.Error(); !strings.Contains(msg, "owner_id") || oneline.Check(msg) != nil {
		t.Errorf("refusal %q: want one printable line naming owner_id", msg)
	}
	if _, err := os.Stat(n.allow); !os.IsNotExist(err) {
		t.Errorf("the include was written: %v", err)
	}
	n.hold("after the hostile owner id", map[netip.Addr]int{a4: 403, b4: 403}, 2*time.Second)

	if err := syncTo(newSink(t, o), webhookEntries("193.0.2.10")); err != nil {
		t.Fatal(err)
	}
	n.expect("after an honest sync", map[netip.Addr]int{a4: 200, b4: 403})
}

func desired(es []plan.Entry) plan.DesiredSet {
	d := plan.DesiredSet{Name: "webhooks", Direction: plan.Ingress, Protocol: plan.TCP, Ports: []uint16{443}}
	for _, e := range es {
		d.Prefixes = append(d.Prefixes, e.Prefix)
	}
	return d
}
