// Command pdsafelist keeps firewalls in sync with PagerDuty's IP addresses.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
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
	stop := profile()
	code := root.Main(ctx, os.Args[1:], cmdutil.System())
	stop()
	os.Exit(code)
}

// profile is a hidden hook for measuring the CLI at scale (see
// scripts/bench/e2e): PDSAFELIST_CPUPROFILE and PDSAFELIST_MEMPROFILE name
// files that get a pprof CPU profile of the whole run and a heap profile
// (allocations since start) at its end. Neither is documented to users.
func profile() (stop func()) {
	cpu, mem := os.Getenv("PDSAFELIST_CPUPROFILE"), os.Getenv("PDSAFELIST_MEMPROFILE")
	var cpuFile *os.File
	if cpu != "" {
		f, err := os.Create(cpu)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "PDSAFELIST_CPUPROFILE %s: %v\n", cpu, err)
		} else {
			cpuFile = f
		}
	}
	return func() {
		if cpuFile != nil {
			pprof.StopCPUProfile()
			cpuFile.Close()
		}
		if mem == "" {
			return
		}
		f, err := os.Create(mem)
		if err == nil {
			runtime.GC()
			err = pprof.Lookup("allocs").WriteTo(f, 0)
			f.Close()
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "PDSAFELIST_MEMPROFILE %s: %v\n", mem, err)
		}
	}
}
