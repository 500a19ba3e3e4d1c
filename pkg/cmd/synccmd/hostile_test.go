package synccmd_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pdsafelist/pdsafelist/pkg/oneline"
)

// The reproduction of issue 20 item 4 end to end: an owner_id that would
// end a line in the nginx include stops the run where the config is read,
// with one line naming the key, and no file is created.
func TestHostileOwnerIDRefusedBeforeAnySink(t *testing.T) {
	dir := t.TempDir()
	conf := "owner_id: \"x\\nallow all;\\n#\"\nsets: [hooks]\ncatalog:\n  hooks:\n    direction: ingress\n    ports: [443]\n    static: [44.1.2.3]\n"
	if err := os.WriteFile(filepath.Join(dir, "pdsafelist.yaml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	allow := filepath.Join(dir, "pagerduty.conf")
	for _, extra := range [][]string{nil, {"--dry-run"}} {
		args := append([]string{"sync", "--sink", "template:" + allow + "?format=nginx"}, extra...)
		code, out, errOut := cli(t, dir, args...)
		msg := strings.TrimSuffix(errOut, "\n")
		if code != 1 || !strings.Contains(msg, "owner_id") || oneline.Check(msg) != nil {
			t.Errorf("%v: code %d, stderr %q; want 1 and one printable line naming owner_id\nstdout: %s", extra, code, errOut, out)
		}
		if _, err := os.Stat(allow); !os.IsNotExist(err) {
			t.Errorf("%v: %s was written: %v", extra, allow, err)
		}
	}
}
