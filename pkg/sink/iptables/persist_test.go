package iptables

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/sink/sinktest"
)

// Issue 13: with ipsets in use and netfilter-persistent installed without
// ipset-persistent's plugin, a saved rules.v4 is rejected at boot. The
// live sink warns once per run; no warning without ipsets, without
// netfilter-persistent, or with the plugin.
func TestLiveWarnsWhenIPSetPluginMissing(t *testing.T) {
	cases := []struct {
		name                 string
		tool, plugins, ipset bool
		threshold            int
		want                 int
	}{
		{"tool without plugin", true, false, false, 1, 1},
		{"plugins dir without ipset plugin", false, true, false, 1, 1},
		{"ipset plugin installed", true, true, true, 1, 0},
		{"no netfilter-persistent", false, false, false, 1, 0},
		{"no ipsets used", true, true, false, 1000, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			p := Persistence{
				Tool:        filepath.Join(dir, "sbin", "netfilter-persistent"),
				PluginsDir:  filepath.Join(dir, "plugins.d"),
				IPSetPlugin: filepath.Join(dir, "plugins.d", "10-ipset"),
			}
			touch := func(path string, dir bool) {
				if dir {
					if err := os.MkdirAll(path, 0o755); err != nil {
						t.Fatal(err)
					}
					return
				}
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, nil, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if c.tool {
				touch(p.Tool, false)
			}
			if c.plugins {
				touch(p.PluginsDir, true)
			}
			if c.ipset {
				touch(p.IPSetPlugin, false)
			}
			o := DefaultOptions()
			o.IPSetThreshold = c.threshold
			s, err := New(o, "", "test")
			if err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			s.log = slog.New(slog.NewTextHandler(&logs, nil))
			s.persist = p
			// The kernel stands in: every command succeeds, nothing is held.
			s.run = func(context.Context, []string, []byte) ([]byte, error) { return nil, nil }
			p1 := sinktest.Plan(t, sink.Step{Sink: s}, desired(), plan.State{})
			for range 2 {
				if err := s.Apply(context.Background(), p1); err != nil {
					t.Fatal(err)
				}
			}
			if got := strings.Count(logs.String(), "ipset-persistent"); got != c.want {
				t.Errorf("%d warnings naming ipset-persistent, want %d:\n%s", got, c.want, logs.String())
			}
		})
	}
}
