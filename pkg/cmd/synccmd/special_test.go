package synccmd_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pdsafelist/pdsafelist/pkg/state"
	"github.com/pdsafelist/pdsafelist/pkg/testutil"
)

// A named pipe where a run reads a file never holds the run: the config,
// a saved plan and a file source are refused at once with one line naming
// the path and its type, and a state file that is one is set aside like a
// corrupt one. Each time the lock is free for the next run.
func TestNamedPipesNeverHoldARun(t *testing.T) {
	const pipe = "is a named pipe, not a regular file"
	run := func(t *testing.T, dir string, args ...string) (int, string, string) {
		t.Helper()
		var code int
		var out, errOut string
		nft := "nftables:" + filepath.Join(dir, "out.nft") + "?check=never"
		testutil.Within(t, 10*time.Second, "sync", func() { code, out, errOut = cli(t, dir, append([]string{"sync", "--sink", nft}, args...)...) })
		return code, out, errOut
	}
	t.Run("config", func(t *testing.T) {
		dir := t.TempDir()
		cfg := testutil.FIFO(t, filepath.Join(dir, "pdsafelist.yaml"))
		code, _, errOut := run(t, dir)
		if code != 1 || strings.TrimSpace(errOut) != "error: config "+cfg+": "+pipe {
			t.Fatalf("code %d: %q", code, errOut)
		}
	})
	t.Run("plan", func(t *testing.T) {
		dir := t.TempDir()
		plan := testutil.FIFO(t, filepath.Join(dir, "plan.json"))
		code, _, errOut := run(t, dir, "--plan", plan)
		if code == 0 || strings.TrimSpace(errOut) != "error: plan "+plan+": "+pipe {
			t.Fatalf("code %d: %q", code, errOut)
		}
	})
	t.Run("file source", func(t *testing.T) {
		dir := t.TempDir()
		list := testutil.FIFO(t, filepath.Join(dir, "list.txt"))
		conf := "sets: [hooks]\ncatalog:\n  hooks:\n    direction: ingress\n    ports: [443]\n    sources:\n      - {type: file, path: " + list + ", format: text}\n"
		if err := os.WriteFile(filepath.Join(dir, "pdsafelist.yaml"), []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		code, out, errOut := run(t, dir)
		if code != 1 || !strings.Contains(out+errOut, list+": "+pipe) {
			t.Fatalf("code %d\n%s\n%s", code, out, errOut)
		}
		// The first run let go of the lock: a second one gets as far.
		if code, out, errOut := run(t, dir); code != 1 || !strings.Contains(out+errOut, list+": "+pipe) {
			t.Fatalf("second run: code %d\n%s\n%s", code, out, errOut)
		}
	})
	t.Run("state", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.MkdirAll(filepath.Join(dir, "state"), 0o755); err != nil {
			t.Fatal(err)
		}
		path := testutil.FIFO(t, filepath.Join(dir, "state", state.FileName))
		code, out, errOut := run(t, dir)
		if code != 0 || !strings.Contains(errOut, "state "+path+": "+pipe+"; moved it to "+path+".corrupt-") {
			t.Fatalf("code %d\n%s\n%s", code, out, errOut)
		}
		if fi, err := os.Lstat(path); err != nil || !fi.Mode().IsRegular() {
			t.Errorf("state file after the run: %v %v", fi, err)
		}
	})
}
