package iptables_test

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pdsafelist/pdsafelist/pkg/cmd/root"
	"github.com/pdsafelist/pdsafelist/pkg/cmdutil"
	"github.com/pdsafelist/pdsafelist/pkg/testutil"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/netns"
)

// The file sink through the whole CLI: a dry run writes nothing, a sync
// writes both files, and the next sync finds nothing to do.
func TestCLIFileSinkDryRunSyncNoChanges(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "pdsafelist.yaml")
	conf := "sets: [hooks]\ncatalog:\n  hooks:\n    direction: ingress\n    ports: [443]\n    static: [193.0.2.10, 2001:db9::10]\n"
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	v4 := filepath.Join(dir, "rules.v4")
	v6 := filepath.Join(dir, "rules.v6")
	run := func(args ...string) (int, string, string) {
		streams, out, errOut := cmdutil.Test()
		f := root.NewFactory(streams)
		f.Now = func() time.Time { return time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC) }
		base := []string{"sync", "--config", cfg, "--state-dir", filepath.Join(dir, "state"),
			"--sink", "iptables-file:" + v4 + "?check=never&enforce=ingress"}
		code := root.Execute(context.Background(), f, append(base, args...))
		return code, out.String(), errOut.String()
	}
	code, out, errOut := run("--dry-run", "--detailed-exitcode")
	if code != 2 || !strings.Contains(out, "Plan: 2 to add, 0 to remove.") || !strings.Contains(out, "iptables-file:"+v4) {
		t.Fatalf("dry run: code %d\n%s%s", code, out, errOut)
	}
	if _, err := os.Stat(v4); err == nil {
		t.Fatal("dry run wrote the file")
	}
	if code, out, errOut := run(); code != 0 {
		t.Fatalf("sync: code %d\n%s%s", code, out, errOut)
	}
	data4, _ := os.ReadFile(v4)
	data6, _ := os.ReadFile(v6)
	if !strings.Contains(string(data4), "-A PDSAFELIST-IN -s 193.0.2.10/32 -p tcp -m tcp --dport 443") ||
		!strings.Contains(string(data6), "-A PDSAFELIST-IN -s 2001:db9::10/128 -p tcp -m tcp --dport 443") ||
		!strings.Contains(string(data6), `--comment "pdsafelist:enforce" -j DROP`) {
		t.Fatalf("files after sync:\n%s\n%s", data4, data6)
	}
	code, out, _ = run("--detailed-exitcode")
	if code != 0 || !strings.Contains(out, "No changes.") {
		t.Fatalf("second sync: code %d\n%s", code, out)
	}
	again4, _ := os.ReadFile(v4)
	again6, _ := os.ReadFile(v6)
	if string(again4) != string(data4) || string(again6) != string(data6) {
		t.Error("no-op sync rewrote the files")
	}
}

// A sync gives the live sink the state directory for its stamp: after a
// no-change run the stamp is there, and a dry run (read-only) made none.
func TestCLILiveStampInStateDir(t *testing.T) {
	testutil.Integration(t, true, "iptables-nft", "ip6tables-nft", "iptables-restore", "ip6tables-restore", "ipset", "ip")
	p := netns.New(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "pdsafelist.yaml")
	conf := "sets: [hooks]\ncatalog:\n  hooks:\n    direction: ingress\n    ports: [443]\n    static: [193.0.2.10, 2001:db9::10]\n"
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	in := "ip netns exec " + p.Server + " "
	spec := "iptables?" + url.Values{"iptables": {in + "iptables-nft"}, "ip6tables": {in + "ip6tables-nft"},
		"iptables-restore": {in + "iptables-restore"}, "ip6tables-restore": {in + "ip6tables-restore"},
		"ipset": {in + "ipset"}, "netns": {p.Server}}.Encode()
	state := filepath.Join(dir, "state")
	run := func(args ...string) {
		t.Helper()
		streams, out, errOut := cmdutil.Test()
		f := root.NewFactory(streams)
		base := []string{"sync", "--config", cfg, "--state-dir", state, "--sink", spec}
		if code := root.Execute(context.Background(), f, append(base, args...)); code != 0 {
			t.Fatalf("sync %v: code %d\n%s%s", args, code, out, errOut)
		}
	}
	stamps := func() []string {
		m, _ := filepath.Glob(filepath.Join(state, "iptables-*.verified"))
		return m
	}
	run() // writes the chains: the generation moves, no stamp yet
	run("--dry-run")
	if s := stamps(); len(s) != 0 {
		t.Fatalf("stamp after a first sync and a dry run: %v", s)
	}
	run()
	if s := stamps(); len(s) != 1 {
		t.Fatalf("no stamp in the state directory after a no-change sync: %v", s)
	}
}
