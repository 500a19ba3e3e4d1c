package resolve_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pdsafelist/pdsafelist/pkg/cmd/root"
	"github.com/pdsafelist/pdsafelist/pkg/cmdutil"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/dnstest"
)

// With one silent and one healthy nameserver, `resolve --timeout 1s` is
// answered by the healthy one within the budget, exits 0 and names the
// silent one; before, it waited the 2s query timeout at each step of a
// CNAME chain and froze the sets.
func TestResolveWithASilentNameserver(t *testing.T) {
	good := dnstest.StartT(t, dnstest.Zone{
		"events.example.com":      {CNAME: "events.gslb.example.net", NoChase: true},
		"events.gslb.example.net": {A: []string{"193.0.2.1"}, AAAA: []string{"2001:db9::1"}},
		"hooks.example.com":       {A: []string{"193.0.2.2", "193.0.2.3"}},
	})
	silent := dnstest.Silent(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "pdsafelist.yaml")
	conf := `sets: [app_events, app_hooks]
catalog:
  app_events: {direction: ingress, ports: [443], sources: [{type: dns, name: events.example.com}]}
  app_hooks: {direction: ingress, ports: [443], sources: [{type: dns, name: hooks.example.com}]}
`
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	streams, out, errOut := cmdutil.Test()
	start := time.Now()
	code := root.Execute(context.Background(), root.NewFactory(streams), []string{"resolve", "--config", cfg,
		"--timeout", "1s", "--nameserver", good.Addr(), "--nameserver", silent})
	took := time.Since(start)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	if took > 1500*time.Millisecond {
		t.Errorf("took %s with --timeout 1s", took)
	}
	for _, want := range []string{"193.0.2.1/32", "2001:db9::1/128", "193.0.2.2/31", "nameserver " + silent} {
		if !strings.Contains(out.String()+errOut.String(), want) {
			t.Errorf("output lacks %q:\n%s\n%s", want, out, errOut)
		}
	}
}
