// Command aggregate measures pdsafelist's prefix aggregation against
// FireHOL's iprange on the same input, in the same run.
//
//	go run ./scripts/bench/aggregate -n 1000000
//
// It writes n random IPv4 addresses to a temporary file, then runs itself
// (-in FILE: parse, aggregate with plan.Aggregate, print CIDRs) and
// `iprange --optimize FILE`, and reports wall time, the ratio, and each
// process's peak RSS from rusage.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
)

func main() {
	n := flag.Int("n", 1_000_000, "random IPv4 addresses to aggregate")
	in := flag.String("in", "", "aggregate this file and print the CIDRs (the measured child)")
	runs := flag.Int("runs", 3, "runs of each tool; the fastest counts")
	flag.Parse()
	if *in != "" {
		if err := aggregate(*in); err != nil {
			fmt.Fprintln(os.Stderr, "aggregate:", err)
			os.Exit(1)
		}
		return
	}
	if err := compare(*n, *runs); err != nil {
		fmt.Fprintln(os.Stderr, "aggregate:", err)
		os.Exit(1)
	}
}

func aggregate(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	// Sized from the file (at least 8 bytes a line), so the slice is not
	// regrown and copied while reading.
	var ps []netip.Prefix
	if fi, err := f.Stat(); err == nil {
		ps = make([]netip.Prefix, 0, fi.Size()/8+1)
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var a netip.Addr
	for sc.Scan() {
		// UnmarshalText parses the bytes in place: no string per line.
		if err := a.UnmarshalText(sc.Bytes()); err != nil || !a.IsValid() {
			return fmt.Errorf("%s: %q: not an address", path, sc.Text())
		}
		ps = append(ps, netip.PrefixFrom(a, a.BitLen()))
	}
	if err := sc.Err(); err != nil {
		return err
	}
	out, err := plan.Aggregate(ps)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(os.Stdout, 1<<16)
	buf := make([]byte, 0, 64)
	for _, p := range out {
		buf = append(p.AppendTo(buf[:0]), '\n')
		if _, err := w.Write(buf); err != nil {
			return err
		}
	}
	return w.Flush()
}

type result struct {
	wall   time.Duration
	maxRSS int64 // KiB
	lines  int
}

func compare(n, runs int) error {
	dir, err := os.MkdirTemp("", "pdsafelist-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	input := filepath.Join(dir, "ips.txt")
	if err := writeInput(input, n); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	ours, err := best(runs, self, "-in", input)
	if err != nil {
		return fmt.Errorf("pdsafelist: %w", err)
	}
	theirs, err := best(runs, "iprange", "--optimize", input)
	if err != nil {
		return fmt.Errorf("iprange: %w", err)
	}
	fmt.Printf("input: %d random IPv4 addresses\n", n)
	fmt.Printf("pdsafelist plan.Aggregate: %8.3fs  peak RSS %6.1f MB  %d CIDRs\n", ours.wall.Seconds(), float64(ours.maxRSS)/1024, ours.lines)
	fmt.Printf("iprange --optimize:        %8.3fs  peak RSS %6.1f MB  %d CIDRs\n", theirs.wall.Seconds(), float64(theirs.maxRSS)/1024, theirs.lines)
	fmt.Printf("time ratio pdsafelist/iprange: %.2fx\n", ours.wall.Seconds()/theirs.wall.Seconds())
	if ours.lines != theirs.lines {
		return fmt.Errorf("outputs differ: %d vs %d CIDRs", ours.lines, theirs.lines)
	}
	return nil
}

func writeInput(path string, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	r := rand.New(rand.NewPCG(1, 2))
	for range n {
		v := r.Uint32()
		fmt.Fprintf(w, "%d.%d.%d.%d\n", byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return f.Close()
}

// best runs a command several times and keeps the fastest run.
func best(runs int, name string, args ...string) (result, error) {
	var out result
	for i := range runs {
		cmd := exec.Command(name, args...)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return out, err
		}
		start := time.Now()
		if err := cmd.Start(); err != nil {
			return out, err
		}
		lines := 0
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines++
		}
		if err := cmd.Wait(); err != nil {
			return out, err
		}
		wall := time.Since(start)
		rss := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss
		if i == 0 || wall < out.wall {
			out = result{wall: wall, maxRSS: rss, lines: lines}
		}
	}
	return out, nil
}
