package synccmd_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pdsafelist/pdsafelist/docs/schema"
	"github.com/pdsafelist/pdsafelist/pkg/cmd/root"
	"github.com/pdsafelist/pdsafelist/pkg/cmdutil"
	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/schemacheck"
)

// env is one test's config, state dir and nftables file.
type env struct {
	t     *testing.T
	dir   string
	now   time.Time
	nft   string
	state string
	// sink replaces the default nftables sink of run when set.
	sink string
}

func newEnv(t *testing.T) *env {
	dir := t.TempDir()
	return &env{t: t, dir: dir, now: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC),
		nft: filepath.Join(dir, "out.nft"), state: filepath.Join(dir, "state")}
}

// config writes a config whose only set is static, so no network is used.
func (e *env) config(static ...string) string {
	e.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "sets: [hooks]\ncatalog:\n  hooks:\n    direction: ingress\n    ports: [443]\n    static: [%s]\n", strings.Join(static, ", "))
	path := filepath.Join(e.dir, "pdsafelist.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		e.t.Fatal(err)
	}
	return path
}

type result struct {
	code        int
	out, errOut string
}

func (e *env) run(args ...string) result {
	e.t.Helper()
	streams, out, errOut := cmdutil.Test()
	f := root.NewFactory(streams)
	f.Now = func() time.Time { return e.now }
	base := []string{"--config", filepath.Join(e.dir, "pdsafelist.yaml")}
	if len(args) > 0 && args[0] == "sync" {
		spec := e.sink
		if spec == "" {
			spec = "nftables:" + e.nft + "?check=never"
		}
		base = append([]string{"sync", "--state-dir", e.state, "--sink", spec}, base...)
		args = args[1:]
	}
	code := root.Execute(context.Background(), f, append(base, args...))
	return result{code, out.String(), errOut.String()}
}

func addrs(n int, third byte) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("198.52.%d.%d", third, 2*i+1) // never adjacent, so never aggregated
	}
	return out
}

func (e *env) file() string {
	data, _ := os.ReadFile(e.nft)
	return string(data)
}

func TestDryRunThenSyncThenNoChanges(t *testing.T) {
	e := newEnv(t)
	e.config("193.0.2.10", "2001:db9::10")
	r := e.run("sync", "--dry-run", "--detailed-exitcode")
	if r.code != 2 || !strings.Contains(r.out, "Plan: 2 to add, 0 to remove.") || !strings.Contains(r.out, "Dry run: nothing was applied.") {
		t.Fatalf("dry run: code %d\n%s%s", r.code, r.out, r.errOut)
	}
	if _, err := os.Stat(e.nft); err == nil {
		t.Fatal("dry run wrote the file")
	}
	if r := e.run("sync"); r.code != 0 || !strings.Contains(e.file(), "193.0.2.10/32") {
		t.Fatalf("sync: code %d\n%s%s", r.code, r.out, r.errOut)
	}
	before := e.file()
	r = e.run("sync", "--detailed-exitcode")
	if r.code != 0 || !strings.Contains(r.out, "No changes.") {
		t.Fatalf("second sync: code %d\n%s", r.code, r.out)
	}
	if e.file() != before {
		t.Error("no-op sync rewrote the file")
	}
}

func TestSyncJSON(t *testing.T) {
	e := newEnv(t)
	e.config("193.0.2.10")
	r := e.run("sync", "--dry-run", "-o", "json")
	var doc struct {
		FormatVersion int  `json:"format_version"`
		DryRun        bool `json:"dry_run"`
		Sinks         []struct {
			Sink string `json:"sink"`
			Add  []struct {
				Set    string `json:"set"`
				Prefix string `json:"prefix"`
			} `json:"add"`
		} `json:"sinks"`
		Summary struct{ Add int } `json:"summary"`
	}
	if err := json.Unmarshal([]byte(r.out), &doc); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, r.out)
	}
	schemacheck.Assert(t, schema.Sync, []byte(r.out))
	if doc.FormatVersion != 1 || !doc.DryRun || doc.Summary.Add != 1 || doc.Sinks[0].Add[0].Prefix != "193.0.2.10/32" || doc.Sinks[0].Add[0].Set != "hooks" {
		t.Errorf("doc = %+v", doc)
	}
}

// A hijacked answer never reaches the firewall.
func TestUnsafePrefixRefused(t *testing.T) {
	e := newEnv(t)
	e.config("193.0.2.10")
	e.run("sync")
	before := e.file()
	for _, bad := range []string{"0.0.0.0/0", "10.1.2.3", "198.52.0.0/16"} {
		e.config("193.0.2.10", bad)
		r := e.run("sync")
		if r.code != 3 || !strings.Contains(r.errOut, "unsafe prefix") {
			t.Errorf("%s: code %d, stderr %q", bad, r.code, r.errOut)
		}
		if e.file() != before {
			t.Errorf("%s: file changed", bad)
		}
	}
}

// An unreachable list freezes the set: the sink keeps what it holds.
func TestFailedSourceFreezes(t *testing.T) {
	e := newEnv(t)
	e.config("193.0.2.10")
	e.run("sync")
	before := e.file()
	cfg := "sets: [hooks]\ncatalog:\n  hooks:\n    direction: ingress\n    ports: [443]\n    urls: [\"https://127.0.0.1:1/list.json\"]\n"
	if err := os.WriteFile(filepath.Join(e.dir, "pdsafelist.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	r := e.run("sync", "--timeout", "5s")
	if r.code != 1 || !strings.Contains(r.out, "FROZEN") || !strings.Contains(r.errOut, "https://127.0.0.1:1/list.json") {
		t.Fatalf("code %d\n%s\n%s", r.code, r.out, r.errOut)
	}
	if strings.Count(strings.TrimSpace(r.errOut), "\n") != 0 {
		t.Errorf("error is not one line: %q", r.errOut)
	}
	if e.file() != before {
		t.Error("a failed source changed the file")
	}
}

func TestMaxDeleteGuard(t *testing.T) {
	e := newEnv(t)
	e.config(addrs(20, 100)...)
	if r := e.run("sync"); r.code != 0 {
		t.Fatalf("first sync %d: %s", r.code, r.errOut)
	}
	before := e.file()
	e.config(addrs(10, 100)...)
	e.now = e.now.Add(2 * time.Hour) // past retention
	metrics := filepath.Join(e.dir, "m.prom")
	r := e.run("sync", "--metrics-file", metrics)
	if r.code != 3 || !strings.Contains(r.errOut, "refused by max-delete guard") || !strings.Contains(r.errOut, "--force") {
		t.Fatalf("shrink by half: code %d\n%s\n%s", r.code, r.out, r.errOut)
	}
	if m, _ := os.ReadFile(metrics); !strings.Contains(string(m), `guard="max_delete"`) {
		t.Errorf("metrics do not count the max-delete refusal:\n%s", m)
	}
	if e.file() != before {
		t.Fatal("refused plan changed the file")
	}
	if r := e.run("sync", "--max-delete", "60%"); r.code != 0 {
		t.Fatalf("within a raised limit: code %d %s", r.code, r.errOut)
	}
	e.config(addrs(2, 100)...)
	e.now = e.now.Add(2 * time.Hour)
	if r := e.run("sync", "--force"); r.code != 0 || strings.Contains(e.file(), "198.52.100.5/32") {
		t.Fatalf("--force: code %d %s", r.code, r.errOut)
	}
}

func TestMinEntries(t *testing.T) {
	e := newEnv(t)
	e.config("193.0.2.10")
	r := e.run("sync", "--min-entries", "hooks=2")
	if r.code != 3 || !strings.Contains(r.errOut, "below min_entries 2") {
		t.Fatalf("code %d %s", r.code, r.errOut)
	}
}

// Retention keeps an address that left the answer for the grace period.
func TestRetentionAcrossRuns(t *testing.T) {
	e := newEnv(t)
	e.config("193.0.2.10", "193.0.2.20")
	e.run("sync")
	e.config("193.0.2.10")
	e.now = e.now.Add(30 * time.Minute)
	r := e.run("sync", "--detailed-exitcode")
	if r.code != 0 || !strings.Contains(r.out, "1 retained") || !strings.Contains(e.file(), "193.0.2.20/32") {
		t.Fatalf("within grace: code %d\n%s", r.code, r.out)
	}
	e.now = e.now.Add(31 * time.Minute)
	if r := e.run("sync"); r.code != 0 || strings.Contains(e.file(), "193.0.2.20/32") {
		t.Fatalf("after grace: code %d\n%s", r.code, r.out)
	}
}

func TestCorruptStateIsSetAside(t *testing.T) {
	e := newEnv(t)
	e.config("193.0.2.10")
	if err := os.MkdirAll(e.state, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.state, "state.json"), []byte("{garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := e.run("sync")
	if r.code != 0 || !strings.Contains(r.errOut, "warning: state") || !strings.Contains(e.file(), "193.0.2.10/32") {
		t.Fatalf("code %d\n%s", r.code, r.errOut)
	}
	aside, _ := filepath.Glob(filepath.Join(e.state, "state.json.corrupt-*"))
	if len(aside) != 1 {
		t.Errorf("corrupt file not set aside: %v", aside)
	}
}

// A second run exits at once while another process holds the lock.
func TestLockHeldByAnotherProcess(t *testing.T) {
	if _, err := exec.LookPath("flock"); err != nil {
		t.Skip("needs flock(1) from util-linux")
	}
	e := newEnv(t)
	e.config("193.0.2.10")
	if err := os.MkdirAll(e.state, 0o755); err != nil {
		t.Fatal(err)
	}
	// Blocking, so the probe below cannot make the holder give up.
	holder := exec.Command("flock", filepath.Join(e.state, "pdsafelist.lock"), "sleep", "30")
	// sleep inherits the lock; killing the group releases it.
	holder.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	release := func() { _ = syscall.Kill(-holder.Process.Pid, syscall.SIGKILL); _ = holder.Wait() }
	t.Cleanup(release)
	// Wait until the holder has the lock.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if err := exec.Command("flock", "--nonblock", filepath.Join(e.state, "pdsafelist.lock"), "true").Run(); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("holder never took the lock (holder state %v)", holder.ProcessState)
		}
		time.Sleep(20 * time.Millisecond)
	}
	start := time.Now()
	r := e.run("sync")
	if r.code != 4 || !strings.Contains(r.errOut, "another pdsafelist run holds the lock") || time.Since(start) > 3*time.Second {
		t.Fatalf("code %d after %s: %s", r.code, time.Since(start), r.errOut)
	}
	if r := e.run("sync", "--wait-lock", "300ms"); r.code != 4 {
		t.Fatalf("--wait-lock: code %d", r.code)
	}
	if r := e.run("sync", "--dry-run"); r.code != 0 {
		t.Errorf("a dry run needs no lock: code %d %s", r.code, r.errOut)
	}
	release()
	// The lock goes when sleep's exit closes the inherited descriptor.
	if r := e.run("sync", "--wait-lock", "5s"); r.code != 0 {
		t.Errorf("after release: code %d %s", r.code, r.errOut)
	}
}

func TestSavedPlan(t *testing.T) {
	e := newEnv(t)
	e.config("193.0.2.10")
	planFile := filepath.Join(e.dir, "plan.json")
	if r := e.run("sync", "--plan-out", planFile); r.code != 0 || !strings.Contains(r.out, "Dry run") {
		t.Fatalf("plan-out: code %d %s%s", r.code, r.out, r.errOut)
	}
	if _, err := os.Stat(e.nft); err == nil {
		t.Fatal("--plan-out applied")
	}
	saved, err := os.ReadFile(planFile)
	if err != nil {
		t.Fatal(err)
	}
	schemacheck.Assert(t, schema.Plan, saved)
	if r := e.run("sync", "--plan", planFile); r.code != 0 || !strings.Contains(e.file(), "193.0.2.10/32") {
		t.Fatalf("apply saved plan: code %d %s%s", r.code, r.out, r.errOut)
	}
	// A plan made before the sink changed is stale.
	e.config("193.0.2.10", "193.0.2.11")
	if r := e.run("sync", "--plan-out", planFile); r.code != 0 {
		t.Fatal(r.errOut)
	}
	e.config("193.0.2.10", "193.0.2.12")
	e.run("sync")
	before := e.file()
	r := e.run("sync", "--plan", planFile)
	if r.code != 3 || !strings.Contains(r.errOut, "stale-plan") {
		t.Fatalf("stale plan: code %d %s", r.code, r.errOut)
	}
	if e.file() != before {
		t.Error("stale plan was applied")
	}
	if err := os.WriteFile(planFile, []byte("not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := e.run("sync", "--plan", planFile); r.code != 1 || !strings.Contains(r.errOut, "not a pdsafelist plan") {
		t.Errorf("garbage plan: code %d %s", r.code, r.errOut)
	}
}

func TestBadInputIsOneLine(t *testing.T) {
	e := newEnv(t)
	e.config("193.0.2.10")
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"sync", "--policy", "yolo"}, `policy "yolo"`},
		{[]string{"sync", "--max-delete", "lots"}, `max-delete "lots"`},
		{[]string{"sync", "--sink", "ftp:x"}, `unknown sink type "ftp"`},
		{[]string{"sync", "-o", "yaml"}, `--output "yaml"`},
		{[]string{"sync", "--plan", "x", "--dry-run"}, "cannot be combined"},
		{[]string{"resolve", "--region", "mars"}, `region "mars"`},
		{[]string{"resolve", "--sets", "nope"}, `unknown set "nope"`},
		{[]string{"resolve", "--no-such-flag"}, "unknown flag"},
	}
	for _, tt := range tests {
		r := e.run(tt.args...)
		if r.code != 1 || !strings.Contains(r.errOut, tt.want) || strings.Contains(r.errOut, "goroutine") {
			t.Errorf("%v: code %d, stderr %q; want 1 and %q", tt.args, r.code, r.errOut, tt.want)
		}
		if lines := strings.Split(strings.TrimSpace(r.errOut), "\n"); !strings.HasPrefix(lines[0], "error: ") {
			t.Errorf("%v: stderr %q", tt.args, r.errOut)
		}
	}
}

// limitSink holds entries in memory and refuses plans that would leave it
// holding more than max, as EC2's rules-per-group limit does.
type limitSink struct {
	max     int
	held    []plan.Entry
	applied int
}

func (s *limitSink) Name() string { return "limit:test" }
func (s *limitSink) Current(context.Context) (plan.State, error) {
	return plan.State{Owned: s.held}, nil
}
func (s *limitSink) Apply(_ context.Context, p plan.SinkPlan) error {
	s.applied++
	s.held = p.Result()
	return nil
}
func (s *limitSink) Check(p plan.SinkPlan) error {
	if n := len(p.Result()); n > s.max {
		return &plan.GuardError{Guard: "rule_limit", Sink: s.Name(), Msg: fmt.Sprintf("would hold %d entries, limit %d", n, s.max)}
	}
	return nil
}

func TestSinkCheckerRefusesBeforeApply(t *testing.T) {
	e := newEnv(t)
	e.config(addrs(3, 100)...)
	ls := &limitSink{max: 2}
	run := func(args ...string) result {
		streams, out, errOut := cmdutil.Test()
		f := root.NewFactory(streams)
		f.Now = func() time.Time { return e.now }
		f.Registry["limit"] = sink.Factory{Help: "limit  test sink", Open: func(sink.Spec, sink.Env) (sink.Sink, error) { return ls, nil }}
		base := []string{"sync", "--state-dir", e.state, "--sink", "limit", "--config", filepath.Join(e.dir, "pdsafelist.yaml"),
			"--metrics-file", filepath.Join(e.dir, "m.prom")}
		code := root.Execute(context.Background(), f, append(base, args...))
		return result{code, out.String(), errOut.String()}
	}
	for _, args := range [][]string{{"--dry-run"}, nil} {
		r := run(args...)
		if r.code != 3 || !strings.Contains(r.errOut, "refused by rule-limit guard: would hold 3 entries, limit 2") {
			t.Fatalf("%v: code %d\n%s%s", args, r.code, r.out, r.errOut)
		}
	}
	if ls.applied != 0 {
		t.Fatalf("refused plan was applied %d times", ls.applied)
	}
	metrics, _ := os.ReadFile(filepath.Join(e.dir, "m.prom"))
	if !strings.Contains(string(metrics), `guard="rule_limit"`) {
		t.Errorf("metrics do not count the refusal:\n%s", metrics)
	}
	ls.max = 3
	if r := run(); r.code != 0 || ls.applied != 1 || len(ls.held) != 3 {
		t.Fatalf("within the limit: code %d applied %d held %d\n%s", r.code, ls.applied, len(ls.held), r.errOut)
	}
}

// A saved plan meets the sink's own limits at apply time too: a limit
// lowered since (or a hand-edited plan) is refused, not applied.
func TestSavedPlanMeetsSinkChecker(t *testing.T) {
	e := newEnv(t)
	e.config(addrs(3, 100)...)
	ls := &limitSink{max: 3}
	planFile := filepath.Join(e.dir, "plan.json")
	run := func(args ...string) result {
		streams, out, errOut := cmdutil.Test()
		f := root.NewFactory(streams)
		f.Now = func() time.Time { return e.now }
		f.Registry["limit"] = sink.Factory{Help: "limit  test sink", Open: func(sink.Spec, sink.Env) (sink.Sink, error) { return ls, nil }}
		base := []string{"sync", "--state-dir", e.state, "--config", filepath.Join(e.dir, "pdsafelist.yaml")}
		code := root.Execute(context.Background(), f, append(base, args...))
		return result{code, out.String(), errOut.String()}
	}
	if r := run("--sink", "limit", "--plan-out", planFile); r.code != 0 {
		t.Fatalf("plan-out: code %d %s", r.code, r.errOut)
	}
	ls.max = 2
	// The applying run names its sinks, as the planning run did.
	r := run("--sink", "limit", "--plan", planFile)
	if r.code != 3 || !strings.Contains(r.errOut, "refused by rule-limit guard") {
		t.Fatalf("saved plan over the limit: code %d\n%s%s", r.code, r.out, r.errOut)
	}
	if ls.applied != 0 {
		t.Fatal("a plan over the sink's limit was applied")
	}
	ls.max = 3
	if r := run("--sink", "limit", "--plan", planFile); r.code != 0 || ls.applied != 1 {
		t.Fatalf("within the limit: code %d applied %d %s", r.code, ls.applied, r.errOut)
	}
}

// hangSink never finishes an apply until its context ends, like an API
// call that hangs.
type hangSink struct{ limitSink }

func (s *hangSink) Apply(ctx context.Context, _ plan.SinkPlan) error {
	<-ctx.Done()
	return ctx.Err()
}

// --run-timeout bounds every sink's apply: a hung target ends the run with
// a one-line error instead of holding the lock for ever.
func TestRunTimeoutBoundsApplies(t *testing.T) {
	e := newEnv(t)
	e.config(addrs(1, 100)...)
	hs := &hangSink{limitSink{max: 10}}
	streams, _, errOut := cmdutil.Test()
	f := root.NewFactory(streams)
	f.Now = func() time.Time { return e.now }
	f.Registry["hang"] = sink.Factory{Help: "hang  test sink", Open: func(sink.Spec, sink.Env) (sink.Sink, error) { return hs, nil }}
	start := time.Now()
	code := root.Execute(context.Background(), f, []string{"sync", "--state-dir", e.state, "--sink", "hang",
		"--config", filepath.Join(e.dir, "pdsafelist.yaml"), "--run-timeout", "200ms"})
	if code != 1 || !strings.Contains(errOut.String(), "run deadline exceeded (--run-timeout 200ms)") {
		t.Fatalf("code %d: %s", code, errOut.String())
	}
	if strings.Count(strings.TrimSpace(errOut.String()), "\n") != 0 {
		t.Errorf("not one line: %q", errOut.String())
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("run took %s despite a 200ms deadline", d)
	}
}

// "direction: Ingress" is ingress: the file gets the accept rule for the
// set and a second run has nothing to do. Before Direction was parsed into
// the plan, the entries carried "Ingress", matched neither chain, and the
// file held the set with no rule using it, planned again on every run.
func TestDirectionInAnyCaseIsEnforced(t *testing.T) {
	e := newEnv(t)
	path := filepath.Join(e.dir, "pdsafelist.yaml")
	if err := os.WriteFile(path, []byte("sets: [hooks]\ncatalog:\n  hooks:\n    direction: Ingress\n    ports: [443]\n    static: [193.0.2.10]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := e.run("sync"); r.code != 0 {
		t.Fatalf("sync: code %d %s", r.code, r.errOut)
	}
	if f := e.file(); !strings.Contains(f, `ip saddr @hooks_tcp443_in_v4 tcp dport 443 accept comment "pdsafelist:hooks"`) {
		t.Errorf("no accept rule for the set:\n%s", f)
	}
	if r := e.run("sync", "--detailed-exitcode"); r.code != 0 {
		t.Errorf("second run: code %d, want 0 (nothing to do)\n%s%s", r.code, r.out, r.errOut)
	}
}

// With no --sink and no sinks in the config, sync plans for the default
// nftables file in the working directory.
func TestDefaultSink(t *testing.T) {
	e := newEnv(t)
	e.config("193.0.2.10")
	t.Chdir(e.dir)
	streams, out, errOut := cmdutil.Test()
	f := root.NewFactory(streams)
	f.Now = func() time.Time { return e.now }
	code := root.Execute(context.Background(), f, []string{"sync", "--dry-run", "--state-dir", e.state, "--config", filepath.Join(e.dir, "pdsafelist.yaml")})
	if code != 0 || !strings.Contains(out.String(), "nftables:pdsafelist.nft") {
		t.Fatalf("code %d:\n%s%s", code, out, errOut)
	}
}
