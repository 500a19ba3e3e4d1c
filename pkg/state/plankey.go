package state

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/google/renameio/v2"

	"github.com/pdsafelist/pdsafelist/pkg/regularfile"
)

// PlanKeyFileName, inside the state directory, holds the key that
// authenticates saved plans made and applied on this host.
const PlanKeyFileName = "plan.key"

// MinPlanKeyLen is the shortest key accepted: 32 bytes, as the SHA-256
// block of HMAC wants at least.
const MinPlanKeyLen = 32

// PlanKeyError says why no key could be had; the run refuses the plan.
type PlanKeyError struct{ Msg string }

func (e *PlanKeyError) Error() string { return e.Msg }

// PlanKey reads the key in dir. With create, a missing key is made: 32
// random bytes, hex, mode 0600, the directory 0700 if it is new.
func PlanKey(dir string, create bool) ([]byte, error) {
	path := filepath.Join(dir, PlanKeyFileName)
	key, err := ReadPlanKey(path)
	if err == nil || !create || !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, fmt.Errorf("plan key %s: %w", path, err)
	}
	key = []byte(hex.EncodeToString(raw))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("plan key %s: %w", path, unwrapPath(err))
	}
	// Another run may create it at the same moment; the first one wins
	// and both read the winner's.
	t, err := renameio.NewPendingFile(path, renameio.WithPermissions(0o600))
	if err != nil {
		return nil, fmt.Errorf("plan key %s: %w", path, unwrapPath(err))
	}
	defer t.Cleanup()
	if _, err := t.Write(append(key, '\n')); err != nil {
		return nil, fmt.Errorf("plan key %s: %w", path, unwrapPath(err))
	}
	if err := t.Sync(); err != nil {
		return nil, fmt.Errorf("plan key %s: %w", path, unwrapPath(err))
	}
	if err := os.Link(t.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("plan key %s: %w", path, unwrapPath(err))
	}
	return ReadPlanKey(path)
}

// ReadPlanKey reads a key file: a regular file no one but its owner may
// read or write (a key others can read lets them forge plans), holding at
// least MinPlanKeyLen bytes; surrounding white space is not part of it.
func ReadPlanKey(path string) ([]byte, error) {
	f, err := regularfile.Open(path)
	if err != nil {
		var nr *regularfile.NotRegularError
		if errors.As(err, &nr) {
			return nil, &PlanKeyError{fmt.Sprintf("plan key %s: %s", path, nr)}
		}
		return nil, fmt.Errorf("plan key %s: %w", path, unwrapPath(err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("plan key %s: %w", path, unwrapPath(err))
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, &PlanKeyError{fmt.Sprintf("plan key %s: mode %04o lets others read or write it; chmod 600 it", path, perm)}
	}
	data, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return nil, fmt.Errorf("plan key %s: %w", path, unwrapPath(err))
	}
	return CheckPlanKey(path, data)
}

// CheckPlanKey trims key and refuses a short one; where names it.
func CheckPlanKey(where string, key []byte) ([]byte, error) {
	key = bytes.TrimSpace(key)
	if len(key) < MinPlanKeyLen {
		return nil, &PlanKeyError{fmt.Sprintf("plan key %s: %d bytes, want at least %d", where, len(key), MinPlanKeyLen)}
	}
	return key, nil
}
