package synccmd_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A failing sink is named once in its error, not "read X: X: path: ...":
// the controller names the sink, and the sink's own prefix is not repeated.
func TestFailingSinkNamedOnce(t *testing.T) {
	for _, typ := range []string{"nftables", "iptables-file", "template"} {
		t.Run(typ, func(t *testing.T) {
			e := newEnv(t)
			e.config("193.0.2.10")
			dir := filepath.Join(e.dir, "isdir")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			e.sink = typ + ":" + dir + "?check=never"
			if typ == "template" {
				e.sink = typ + ":" + dir
			}
			r := e.run("sync")
			name := typ + ":" + dir
			if r.code == 0 || !strings.Contains(r.errOut, name) {
				t.Fatalf("code %d, stderr %q: want a failure naming %s", r.code, r.errOut, name)
			}
			for _, line := range strings.Split(strings.TrimSpace(r.errOut), "\n") {
				if n := strings.Count(line, name); n > 1 {
					t.Errorf("%q names the sink %d times", line, n)
				}
			}
		})
	}
}
