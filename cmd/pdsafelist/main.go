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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := root.Main(ctx, os.Args[1:], cmdutil.System())
	stop()
	os.Exit(code)
}
