// Command pdsafelist keeps firewalls in sync with PagerDuty's IP addresses.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/pdsafelist/pdsafelist/pkg/cmd/root"
	"github.com/pdsafelist/pdsafelist/pkg/cmdutil"
)

func main() {
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sigs
		// A second signal takes the default action: it kills at once.
		signal.Stop(sigs)
		cancel(&cmdutil.InterruptedError{Signal: s.(syscall.Signal)})
	}()
	os.Exit(root.Main(ctx, os.Args[1:], cmdutil.System()))
}
