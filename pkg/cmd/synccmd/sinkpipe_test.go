package synccmd_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pdsafelist/pdsafelist/pkg/testutil"
)

// A named pipe where a file sink reads what it holds (its own file, or a
// user template) is refused at once, naming the path and its type; the
// run never waits on it.
func TestNamedPipeAsSinkFile(t *testing.T) {
	for name, spec := range map[string]func(p string) string{
		"nftables":      func(p string) string { return "nftables:" + p + "?check=never" },
		"iptables-file": func(p string) string { return "iptables-file:" + p + "?check=never" },
		"template":      func(p string) string { return "template:" + p + "?format=plain" },
		"template file": func(p string) string {
			return "template:" + filepath.Join(filepath.Dir(p), "out.txt") + "?template=" + p
		},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			e.config("193.0.2.10")
			path := testutil.FIFO(t, filepath.Join(e.dir, "held"))
			e.sink = spec(path)
			var r result
			testutil.Within(t, 10*time.Second, "sync", func() { r = e.run("sync") })
			if r.code == 0 || !strings.Contains(r.errOut, "is a named pipe, not a regular file") || strings.Count(strings.TrimSpace(r.errOut), "\n") > 0 {
				t.Fatalf("code %d, want a one-line refusal naming the pipe:\n%s", r.code, r.errOut)
			}
		})
	}
}
