package template

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/testutil"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/netns"
)

// Debian's nginx in a network namespace reads the allow-list: after a sync
// and a reload, a safelisted source gets 200 and another 403; a change of
// addresses swaps them; a file nginx rejects is never put in place and the
// running nginx keeps serving.
func TestNginxAllowListWithRealTraffic(t *testing.T) {
	testutil.Integration(t, true, "ip", "nginx")
	var (
		a4 = netip.MustParseAddr("193.0.2.10")
		b4 = netip.MustParseAddr("193.0.2.20")
		a6 = netip.MustParseAddr("2001:db9::10")
	)
	p := netns.New(t, a4, b4, a6)
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
	const port = 8080
	cfg := strings.NewReplacer("DIR", dir, "ALLOW", allow, "WWW", www, "PORT", "8080").Replace(`user root;
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
	inNS := "ip netns exec " + p.Server + " "
	s := newSink(t, Options{Path: allow, Format: "nginx",
		Check:  inNS + "nginx -t -q -c " + conf,
		Reload: inNS + "nginx -s reload -c " + conf})

	set := func(addrs ...string) []plan.Entry {
		var es []plan.Entry
		for _, a := range addrs {
			ad := netip.MustParseAddr(a)
			es = append(es, plan.Entry{Set: "webhooks", Prefix: netip.PrefixFrom(ad, ad.BitLen()), Direction: plan.Ingress, Protocol: plan.TCP, Port: 443})
		}
		return es
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

	status := func(src netip.Addr) int {
		dst := netns.Server4
		if src.Is6() {
			dst = netns.Server6
		}
		code, err := p.HTTPStatus(src, dst, port, "/", 2*time.Second)
		if err != nil {
			return -1
		}
		return code
	}
	// A reload swaps workers asynchronously: wait for the new answer.
	expect := func(when string, want map[netip.Addr]int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			ok := true
			for src, code := range want {
				if status(src) != code {
					ok = false
				}
			}
			if ok {
				return
			}
			if time.Now().After(deadline) {
				for src, code := range want {
					t.Errorf("%s: %s gets %d, want %d", when, src, status(src), code)
				}
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	syncTo := func(es []plan.Entry) error {
		st, err := s.Current(context.Background())
		if err != nil {
			return err
		}
		return s.Apply(context.Background(), plan.Calculate(s.Name(), []plan.DesiredSet{desired(es)}, st, nil))
	}

	if err := syncTo(set("193.0.2.10", "2001:db9::10")); err != nil {
		t.Fatal(err)
	}
	expect("after the first sync", map[netip.Addr]int{a4: 200, a6: 200, b4: 403})

	if err := syncTo(set("193.0.2.20")); err != nil {
		t.Fatal(err)
	}
	expect("after the addresses changed", map[netip.Addr]int{a4: 403, a6: 403, b4: 200})

	// A template nginx rejects: the check fails, the old file stays and
	// the running nginx is untouched.
	before, _ := os.ReadFile(allow)
	bad := filepath.Join(dir, "bad.tmpl")
	if err := os.WriteFile(bad, []byte("{{range .Prefixes}}allow {{.}}\n{{end}}"), 0o644); err != nil {
		t.Fatal(err)
	}
	broken, err := New(Options{Path: allow, Template: bad, Check: s.opts.Check, Reload: s.opts.Reload}, "", "test")
	if err != nil {
		t.Fatal(err)
	}
	err = broken.Apply(context.Background(), plan.SinkPlan{Add: set("193.0.2.10")})
	if err == nil || !strings.Contains(err.Error(), "check failed") {
		t.Fatalf("a file nginx rejects was accepted: %v", err)
	}
	if after, _ := os.ReadFile(allow); string(after) != string(before) {
		t.Errorf("the old file was not kept")
	}
	expect("after a rejected file", map[netip.Addr]int{a4: 403, b4: 200})
}

func desired(es []plan.Entry) plan.DesiredSet {
	d := plan.DesiredSet{Name: "webhooks", Direction: plan.Ingress, Protocol: plan.TCP, Ports: []uint16{443}}
	for _, e := range es {
		d.Prefixes = append(d.Prefixes, e.Prefix)
	}
	return d
}
