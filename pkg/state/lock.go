package state

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/gofrs/flock"
)

// LockFileName is the run lock inside the state directory.
const LockFileName = "pdsafelist.lock"

// LockedError says another run holds the lock.
type LockedError struct{ Err error }

func (e *LockedError) Error() string { return e.Err.Error() }
func (e *LockedError) Unwrap() error { return e.Err }

// Lock takes the run lock in dir without blocking, or waits up to wait,
// and returns its release. Two runs at once would read the same state and
// race their applies.
func Lock(ctx context.Context, log *slog.Logger, dir string, wait time.Duration) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("state dir %s: %w (set --state-dir)", dir, errors.Unwrap(err))
	}
	path := filepath.Join(dir, LockFileName)
	fl := flock.New(path)
	ok, err := fl.TryLock()
	if err == nil && !ok && wait > 0 {
		log.Info("waiting for another run's lock", "path", path, "for", wait.String())
		wctx, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		ok, err = fl.TryLockContext(wctx, 100*time.Millisecond)
		if errors.Is(err, context.DeadlineExceeded) {
			err = nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if !ok {
		msg := "another pdsafelist run holds the lock; exiting"
		if wait > 0 {
			msg = fmt.Sprintf("another pdsafelist run held the lock for %s; giving up", wait)
		}
		return nil, &LockedError{Err: fmt.Errorf("lock %s: %s (use --wait-lock to wait)", path, msg)}
	}
	return func() { _ = fl.Unlock() }, nil
}
