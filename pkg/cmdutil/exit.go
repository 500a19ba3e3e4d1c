// Package cmdutil holds what every command shares: streams, the factory of
// lazy clients, and the one table that maps errors to exit codes.
package cmdutil

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/pdsafelist/pdsafelist/pkg/controller"
	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/state"
)

// Exit codes. They are part of the CLI contract.
const (
	ExitOK      = 0
	ExitError   = 1
	ExitChanges = 2 // only with --detailed-exitcode
	ExitUnsafe  = 3 // a safety guard refused
	ExitLocked  = 4 // another run holds the lock
)

// InterruptedError is a run stopped by a signal. It exits 128 plus the
// signal number, as a shell reports a process the signal killed: 130 for
// SIGINT, 143 for SIGTERM.
type InterruptedError struct{ Signal syscall.Signal }

func (e *InterruptedError) Error() string {
	return fmt.Sprintf("interrupted by %s; a sync applied so far is safe to re-run", signalName(e.Signal))
}

func signalName(s syscall.Signal) string {
	switch s {
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGTERM:
		return "SIGTERM"
	}
	return s.String()
}

// ExitCode decides the process exit code from an error. Unsafe outranks a
// plain error: a hijacked answer must stand out in alerting.
func ExitCode(err error) int {
	var (
		locked *state.LockedError
		intr   *InterruptedError
	)
	_, refused := plan.RefusedBy(err)
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &intr):
		return 128 + int(intr.Signal)
	case errors.As(err, &locked):
		return ExitLocked
	case refused:
		return ExitUnsafe
	case isChanges(err):
		return ExitChanges
	default:
		return ExitError
	}
}

// isChanges is true only for a bare controller.ChangesError: joined with
// a real failure, the failure decides.
func isChanges(err error) bool {
	_, ok := err.(controller.ChangesError)
	return ok
}
