package root_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pdsafelist/pdsafelist/pkg/cmd/root"
	"github.com/pdsafelist/pdsafelist/pkg/cmdutil"
)

// complete asks the command tree what the shell would offer, as the
// generated completion scripts do (the hidden __complete command).
func complete(t *testing.T, args ...string) []string {
	t.Helper()
	streams, out, errOut := cmdutil.Test()
	if code := root.Execute(context.Background(), root.NewFactory(streams), append([]string{"__complete"}, args...)); code != 0 {
		t.Fatalf("__complete %v: code %d %s", args, code, errOut)
	}
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if !strings.HasPrefix(l, ":") {
			got = append(got, strings.SplitN(l, "\t", 2)[0])
		}
	}
	return got
}

// Shell completion offers the values of --policy, --region, --sets, -o
// and the sink types, not file names.
func TestCompletionValues(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(cfg, []byte("catalog:\n  office:\n    direction: ingress\n    ports: [443]\n    static: [193.0.2.1]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"sync", "--policy", ""}, []string{"create-only", "sync", "upsert-only"}},
		{[]string{"sync", "--region", ""}, []string{"us", "eu", "all"}},
		{[]string{"sync", "-o", ""}, []string{"text", "json"}},
		{[]string{"resolve", "-o", ""}, []string{"text", "json"}},
		{[]string{"sync", "--sink", ""}, sinkTypes()},
		{[]string{"sync", "--sink", "ipt"}, []string{"iptables-file:", "iptables?"}},
		{[]string{"check", "--sink", "nf"}, []string{"nftables:"}},
		{[]string{"sync", "--config", cfg, "--sets", "events,"}, []string{"events,api", "events,app", "events,office", "events,webhooks"}},
	} {
		got := complete(t, c.args...)
		slices.Sort(got)
		want := slices.Clone(c.want)
		slices.Sort(want)
		// Cobra filters by prefix in the shell script, not here, except
		// for values it knows; compare what starts with the typed text.
		typed := c.args[len(c.args)-1]
		var kept []string
		for _, g := range got {
			if strings.HasPrefix(g, typed) {
				kept = append(kept, g)
			}
		}
		if !slices.Equal(kept, want) {
			t.Errorf("%v: got %q, want %q", c.args, kept, want)
		}
	}
}

// sinkTypes is every registered type as completion offers it: TYPE: when
// the type takes an argument after the colon, TYPE? when it does not.
func sinkTypes() []string {
	var out []string
	r := root.Registry()
	for _, t := range r.Types() {
		if r[t].ArgKey != "" {
			out = append(out, t+":")
		} else {
			out = append(out, t+"?")
		}
	}
	if len(out) < 8 {
		panic("fewer sink types than the project has")
	}
	return out
}
