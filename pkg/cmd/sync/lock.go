package sync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/gofrs/flock"

	"github.com/pdsafelist/pdsafelist/pkg/cmdutil"
)

// LockFile is the lock inside the state directory.
const LockFile = "pdsafelist.lock"

// lock takes the run lock without blocking, or waits up to wait. Two runs
// at once would read the same state and race their applies.
func lock(ctx context.Context, log *slog.Logger, dir string, wait time.Duration) (func(), error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("state dir %s: %w (set --state-dir)", dir, errors.Unwrap(err))
	}
	path := filepath.Join(dir, LockFile)
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
		return nil, &cmdutil.LockedError{Err: fmt.Errorf("lock %s: %s (use --wait-lock to wait)", path, msg)}
	}
	return func() { _ = fl.Unlock() }, nil
}
