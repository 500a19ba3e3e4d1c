package synccmd_test

import (
	"os"
	"strings"
	"testing"
)

// A state directory another local user can write is refused, as ssh
// refuses a key with bad permissions: whoever can write there can plant
// the state (addresses kept open) or the lock. Sticky does not help: it
// stops others replacing our files, not creating them before we do.
func TestStateDirWritableByOthersRefused(t *testing.T) {
	for _, tt := range []struct {
		name string
		mode os.FileMode
		uid  int
		want string
	}{
		{"world-writable", 0o777, 0, "world-writable"},
		{"world-writable sticky", 0o777 | os.ModeSticky, 0, "world-writable"},
		{"another user's", 0o755, 4242, "owned by uid 4242"},
	} {
		for _, dry := range []bool{false, true} {
			e := newEnv(t)
			e.config("193.0.2.10")
			if err := os.Mkdir(e.state, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(e.state, tt.mode); err != nil {
				t.Fatal(err)
			}
			if tt.uid != 0 {
				if os.Geteuid() != 0 {
					t.Skip("chown needs root")
				}
				if err := os.Chown(e.state, tt.uid, tt.uid); err != nil {
					t.Fatal(err)
				}
			}
			args := []string{"sync"}
			if dry {
				args = append(args, "--dry-run")
			}
			r := e.run(args...)
			msg := strings.TrimSpace(r.errOut)
			if r.code != 1 || !strings.Contains(msg, "state dir "+e.state) || !strings.Contains(msg, tt.want) || strings.Contains(msg, "\n") {
				t.Errorf("%s (dry run %v): code %d, want 1 and a one-line error naming the dir and %q:\n%s%s", tt.name, dry, r.code, tt.want, r.out, r.errOut)
			}
			if _, err := os.Stat(e.nft); err == nil {
				t.Errorf("%s (dry run %v): the sink was written", tt.name, dry)
			}
			if _, err := os.Stat(e.state + "/state.json"); err == nil {
				t.Errorf("%s (dry run %v): a state file was written", tt.name, dry)
			}
		}
	}
}
