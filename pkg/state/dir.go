package state

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// CheckDir refuses a state directory another local user can write, as ssh
// refuses a key file with bad permissions: whoever writes there can plant
// the state (addresses kept open past their time) or take the lock. A
// sticky bit is no answer: it stops others replacing our files, not
// creating state.json or the lock before we first do. A directory that
// does not exist yet is fine; it is created 0755.
func CheckDir(dir string, euid int) error {
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("state dir %s: %w", dir, unwrapPath(err))
	}
	if !fi.IsDir() {
		return fmt.Errorf("state dir %s: not a directory (%s)", dir, fi.Mode().Type())
	}
	if fi.Mode().Perm()&0o002 != 0 {
		mode := uint32(fi.Mode().Perm())
		if fi.Mode()&fs.ModeSticky != 0 {
			mode |= 0o1000
		}
		return fmt.Errorf("state dir %s: world-writable (mode %04o): any local user could plant the state or the lock; chmod o-w it or set --state-dir", dir, mode)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 && int(st.Uid) != euid {
		return fmt.Errorf("state dir %s: owned by uid %d, not root or this user (uid %d), who could rewrite the state; set --state-dir", dir, st.Uid, euid)
	}
	return nil
}
