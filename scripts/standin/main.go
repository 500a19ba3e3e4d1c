// Command standin serves testdata/snapshot as PagerDuty's DNS names and
// published lists on loopback, for scripts/demo.sh and manual trials. It
// writes the pdsafelist flags that point at it to --flags-out and runs until
// SIGINT or SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/pdsafelist/pdsafelist/pkg/testutil/standin"
)

func main() {
	snapshot := flag.String("snapshot", "testdata/snapshot", "snapshot `DIR`")
	dnsAddr := flag.String("dns", "127.0.0.1:0", "DNS listen `ADDR` (UDP and TCP)")
	httpAddr := flag.String("http", "127.0.0.1:0", "HTTPS listen `ADDR`")
	delay := flag.Duration("delay", 0, "added to every DNS answer")
	out := flag.String("flags-out", "", "write the pdsafelist flags to `FILE` (the CA goes beside it)")
	flag.Parse()
	if err := run(*snapshot, *dnsAddr, *httpAddr, *delay, *out); err != nil {
		fmt.Fprintf(os.Stderr, "standin: %v\n", err)
		os.Exit(1)
	}
}

func run(snapshot, dnsAddr, httpAddr string, delay time.Duration, out string) error {
	s, err := standin.Start(standin.Options{Snapshot: snapshot, DNSAddr: dnsAddr, HTTPAddr: httpAddr, Delay: delay})
	if err != nil {
		return err
	}
	defer s.Close()
	dir := os.TempDir()
	if out != "" {
		dir = filepath.Dir(out)
	}
	ca := filepath.Join(dir, "standin-ca.pem")
	if err := os.WriteFile(ca, s.CAPEM(), 0o644); err != nil {
		return err
	}
	line := strings.Join(s.Flags(ca), " ") + "\n"
	if out != "" {
		// Written last and renamed, so a reader never sees half a line.
		if err := os.WriteFile(out+".tmp", []byte(line), 0o644); err != nil {
			return err
		}
		if err := os.Rename(out+".tmp", out); err != nil {
			return err
		}
	}
	fmt.Print(line)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	return nil
}
