package synccmd_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pdsafelist/pdsafelist/pkg/cmd/root"
	"github.com/pdsafelist/pdsafelist/pkg/cmdutil"
	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
)

const falseMatch = "The sinks match the desired sets"

// A file someone else wrote at the sink's path fails that sink; the
// summary counts it instead of claiming the sinks match.
func TestSummaryForeignFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "nftables.conf")
	foreign := "table inet filter {\n}\n"
	if err := os.WriteFile(path, []byte(foreign), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := cli(t, dir, "sync", "--sink", "nftables:"+path+"?check=never")
	if code != 1 || strings.Contains(out, falseMatch) || !strings.Contains(out, "Nothing planned: 1 of 1 sink failed (see above).") {
		t.Fatalf("code %d\n%s\n%s", code, out, errOut)
	}
	if data, _ := os.ReadFile(path); string(data) != foreign {
		t.Error("the foreign file changed")
	}
	// Beside a sink that does match, the summary says which is which.
	code, out, _ = cli(t, dir, "sync", "--sink", "nftables:"+path+"?check=never", "--sink", "nftables:"+filepath.Join(dir, "ours.nft")+"?check=never")
	if code != 1 || !strings.Contains(out, "Applied to 1 of 2 sinks; 1 failed (see above).") {
		t.Fatalf("code %d\n%s", code, out)
	}
	code, out, _ = cli(t, dir, "sync", "--sink", "nftables:"+path+"?check=never", "--sink", "nftables:"+filepath.Join(dir, "ours.nft")+"?check=never")
	if code != 1 || strings.Contains(out, falseMatch) || !strings.Contains(out, "No changes to 1 of 2 sinks; 1 failed (see above).") {
		t.Fatalf("code %d\n%s", code, out)
	}
}

// When every set is frozen nothing was compared, so nothing may be called
// a match.
func TestSummaryEverySetFrozen(t *testing.T) {
	dir := t.TempDir()
	cfg := "sets: [hooks]\ncatalog:\n  hooks:\n    direction: ingress\n    ports: [443]\n    urls: [\"https://127.0.0.1:1/list.json\"]\n"
	if err := os.WriteFile(filepath.Join(dir, "pdsafelist.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := cli(t, dir, "sync", "--timeout", "5s", "--sink", "nftables:"+filepath.Join(dir, "out.nft")+"?check=never")
	if code != 1 || strings.Contains(out, falseMatch) || !strings.Contains(out, "No set was planned: every set is frozen and kept as is.") {
		t.Fatalf("code %d\n%s\n%s", code, out, errOut)
	}
}

// readHangSink's reads hang until the run deadline, like an API that never
// answers.
type readHangSink struct{}

func (readHangSink) Name() string { return "hang:read" }
func (readHangSink) Current(ctx context.Context) (plan.State, error) {
	<-ctx.Done()
	return plan.State{}, ctx.Err()
}
func (readHangSink) Apply(context.Context, plan.SinkPlan) error { return nil }

// A sink the deadline cut off was never compared.
func TestSummaryDeadline(t *testing.T) {
	dir := t.TempDir()
	nft := "nftables:" + filepath.Join(dir, "out.nft") + "?check=never"
	if code, out, errOut := cli(t, dir, "sync", "--sink", nft); code != 0 {
		t.Fatalf("first sync: code %d\n%s\n%s", code, out, errOut)
	}
	streams, out, errOut := cmdutil.Test()
	f := root.NewFactory(streams)
	f.Registry["hang"] = sink.Factory{Help: "hang  test sink", Open: func(sink.Spec, sink.Env) (sink.Sink, error) { return readHangSink{}, nil }}
	code := root.Execute(context.Background(), f, []string{"sync", "--state-dir", filepath.Join(dir, "state"),
		"--config", filepath.Join(dir, "pdsafelist.yaml"), "--run-timeout", "300ms", "--sink", "hang", "--sink", nft})
	if code != 1 || strings.Contains(out.String(), falseMatch) || !strings.Contains(out.String(), "No changes to 1 of 2 sinks; 1 failed (see above).") ||
		!strings.Contains(errOut.String(), "run deadline exceeded (--run-timeout 300ms)") {
		t.Fatalf("code %d\n%s\n%s", code, out.String(), errOut.String())
	}
}
