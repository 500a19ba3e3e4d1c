package synccmd_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pdsafelist/pdsafelist/pkg/cmd/root"
	"github.com/pdsafelist/pdsafelist/pkg/cmdutil"
)

// runStdin runs the CLI with stdin and no default --config.
func (e *env) runStdin(stdin string, args ...string) result {
	e.t.Helper()
	streams, out, errOut := cmdutil.Test()
	streams.In = strings.NewReader(stdin)
	f := root.NewFactory(streams)
	f.Now = func() time.Time { return e.now }
	code := root.Execute(context.Background(), f, args)
	return result{code, out.String(), errOut.String()}
}

// - means standard input for --config and --plan and standard output for
// --plan-out: a plan piped from one run applies in the next.
func TestDashIsStdinAndStdout(t *testing.T) {
	e := newEnv(t)
	cfg := "sets: [hooks]\ncatalog:\n  hooks:\n    direction: ingress\n    ports: [443]\n    static: [193.0.2.10]\n"
	sinkFlag := []string{"--state-dir", e.state, "--sink", "nftables:" + e.nft + "?check=never"}

	r := e.runStdin(cfg, append([]string{"sync", "--config", "-", "--plan-out", "-"}, sinkFlag...)...)
	if r.code != 0 {
		t.Fatalf("--config - --plan-out -: code %d\n%s", r.code, r.errOut)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(r.out), &doc); err != nil {
		t.Fatalf("stdout is not the plan document: %v\n%s", err, r.out)
	}
	if !strings.Contains(r.errOut, "193.0.2.10") {
		t.Errorf("the plan text is not on stderr:\n%s", r.errOut)
	}
	if _, err := os.Stat(e.nft); err == nil {
		t.Fatal("--plan-out applied the plan")
	}
	if _, err := os.Stat(filepath.Join(e.dir, "-")); err == nil {
		t.Fatal("--plan-out - wrote a file named -")
	}

	e.config("193.0.2.10")
	a := e.runStdin(r.out, append([]string{"sync", "--config", filepath.Join(e.dir, "pdsafelist.yaml"), "--plan", "-"}, sinkFlag...)...)
	if a.code != 0 || !strings.Contains(e.file(), "193.0.2.10") {
		t.Fatalf("--plan -: code %d\n%s%s\nfile:\n%s", a.code, a.out, a.errOut, e.file())
	}

	// Standard input is read once.
	b := e.runStdin(cfg, append([]string{"sync", "--config", "-", "--plan", "-"}, sinkFlag...)...)
	if b.code != 1 || !strings.Contains(b.errOut, "standard input is already read by --config -") {
		t.Errorf("--config - --plan -: code %d %s", b.code, b.errOut)
	}
	c := e.runStdin("", append([]string{"sync", "--config", "-", "--dry-run"}, sinkFlag...)...)
	if c.code != 1 || !strings.Contains(c.errOut, "--config -: standard input is empty") {
		t.Errorf("empty stdin: code %d %s", c.code, c.errOut)
	}
	d := e.runStdin(cfg, append([]string{"sync", "--config", "-", "--plan-out", "-", "-o", "json"}, sinkFlag...)...)
	if d.code != 1 || !strings.Contains(d.errOut, "second document") {
		t.Errorf("--plan-out - -o json: code %d %s", d.code, d.errOut)
	}
}
