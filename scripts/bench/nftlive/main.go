// Command nftlive measures the live nftables sink (apply=true) through the
// built CLI against nft itself, in the same run (root, network namespaces):
//
//	go run ./scripts/bench/nftlive -n 100000 -runs 3
//
// It writes n random public IPv4 addresses as a text list (a file source),
// runs `pdsafelist sync` inside a fresh network namespace once to load them,
// then measures, as child processes with their own children (rusage):
//
//   - one address added: the sync after one address joined the list,
//     against the hand `nft add element` of one address into the same
//     loaded table (target: CPU <= 1x);
//   - no change: a sync with nothing to do, the live drift check included,
//     against a fresh `nft -f` of the same file into an EMPTY namespace
//     (target: CPU <= 0.5x).
//
// Each sync is measured twice: as it runs when nothing else changed the
// namespace's ruleset since the last run (the sink's stamp stands in for
// a dump of the table), and after an unrelated table was added and
// deleted, which makes it read the whole table through netlink.
//
// Every figure is the lowest CPU time of -runs runs, with its system
// (kernel) part. -bin measures another pdsafelist binary (a baseline built
// from an older commit).
//
// The last line splits what a no-change full read costs beyond the common
// path into user time (ours: decoding and comparing the dump) and system
// time (the kernel's dump of the set). No reader of the table can go below
// the common path plus that system time.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

const rusageEnv = "PDSAFELIST_NFTLIVE_RUSAGE"

func main() {
	if out := os.Getenv(rusageEnv); out != "" {
		os.Exit(spawn(out, os.Args[1:]))
	}
	n := flag.Int("n", 100_000, "random public IPv4 addresses in the list")
	runs := flag.Int("runs", 3, "runs of each measurement; the lowest CPU time counts")
	bin := flag.String("bin", "", "measure this pdsafelist binary instead of building ./cmd/pdsafelist")
	flag.Parse()
	if err := run(*n, *runs, *bin); err != nil {
		fmt.Fprintln(os.Stderr, "nftlive:", err)
		os.Exit(1)
	}
}

type measure struct {
	cpu, sys, wall time.Duration // sys: the kernel's share of cpu
}

func (m measure) String() string {
	return fmt.Sprintf("cpu %6.3fs (sys %6.3fs)  wall %6.3fs", m.cpu.Seconds(), m.sys.Seconds(), m.wall.Seconds())
}

func run(n, runs int, bin string) error {
	dir, err := os.MkdirTemp("", "pdsafelist-nftlive")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if bin == "" {
		bin = filepath.Join(dir, "pdsafelist")
		if out, err := exec.Command("go", "build", "-o", bin, "./cmd/pdsafelist").CombinedOutput(); err != nil {
			return fmt.Errorf("go build: %v: %s", err, out)
		}
	}
	ns := fmt.Sprintf("pdsl-nftlive-%d", os.Getpid())
	empty := ns + "-empty"
	for _, name := range []string{ns, empty} {
		if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
			return fmt.Errorf("ip netns add: %v: %s", err, out)
		}
		defer exec.Command("ip", "netns", "del", name).Run()
	}

	// First octets 11..99 hold no special-purpose range.
	r := rand.New(rand.NewPCG(1, 2))
	seen := map[netip.Addr]bool{}
	var addrs []string
	for len(addrs) < n+1 {
		v := r.Uint32()&0x00ffffff | uint32(11+r.IntN(89))<<24
		a := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
		// No neighbours either, so the extra address stays one element.
		if seen[a] || seen[a.Prev()] || seen[a.Next()] {
			continue
		}
		seen[a] = true
		addrs = append(addrs, a.String())
	}
	extra, addrs := addrs[n], addrs[:n]
	// Two lists: one list holds at most 100,000 entries.
	lists := []string{filepath.Join(dir, "list1.txt"), filepath.Join(dir, "list2.txt")}
	writeList := func(as []string) error {
		for i, l := range lists {
			part := as[i*len(as)/2 : (i+1)*len(as)/2]
			if err := os.WriteFile(l, []byte(strings.Join(part, "\n")+"\n"), 0o644); err != nil {
				return err
			}
		}
		return nil
	}
	if err := writeList(addrs); err != nil {
		return err
	}
	cfg := filepath.Join(dir, "pdsafelist.yaml")
	conf := fmt.Sprintf("sets: [big]\nstate_dir: %s\ntimeout: 10m\ncatalog:\n  big:\n    direction: ingress\n    ports: [443]\n    sources:\n      - {type: file, path: %s, format: text}\n      - {type: file, path: %s, format: text}\n",
		filepath.Join(dir, "state"), lists[0], lists[1])
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		return err
	}
	nftFile := filepath.Join(dir, "pdsafelist.nft")
	sync := []string{"ip", "netns", "exec", ns, bin, "--config", cfg, "sync", "--sink", "nftables:" + nftFile + "?apply=true&enforce=ingress"}
	inNS := func(name string, args ...string) []string {
		return append([]string{"ip", "netns", "exec", name}, args...)
	}
	quiet := func(argv ...string) error {
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v: %s", strings.Join(argv, " "), err, out)
		}
		return nil
	}

	fmt.Printf("nftables live (apply=true), %d addresses in two text lists, min CPU of %d runs\n", n, runs)
	first, err := once(sync)
	if err != nil {
		return err
	}
	fmt.Printf("  first sync (load)                 %v\n", first)
	const set = "big_tcp443_in_v4"

	// The hand command: one element into the loaded table, taken out again
	// after each run (not measured).
	hand, err := best(runs, inNS(ns, "nft", "add", "element", "inet", "pdsafelist", set, "{ "+extra+" }"), func() error {
		return quiet(inNS(ns, "nft", "delete", "element", "inet", "pdsafelist", set, "{ "+extra+" }")...)
	}, nil)
	if err != nil {
		return err
	}
	fmt.Printf("  nft add element (by hand)         %v\n", hand)

	// Any change to the namespace's ruleset moves its generation, so the
	// next sync reads the whole table again instead of trusting its stamp.
	bump := func() error {
		if err := quiet(inNS(ns, "nft", "add", "table", "inet", "pdsl_bump")...); err != nil {
			return err
		}
		return quiet(inNS(ns, "nft", "delete", "table", "inet", "pdsl_bump")...)
	}
	// One address added to the list; the list and the table go back to
	// n addresses after each run (not measured).
	revert := func() error {
		if err := writeList(addrs); err != nil {
			return err
		}
		_, err := once(sync)
		return err
	}
	addOne := func() error { return writeList(append(slices.Clone(addrs), extra)) }
	for _, c := range []struct {
		name   string
		before func() error
	}{
		{"sync, one address added          ", addOne},
		{"  after a change elsewhere (full read)", func() error {
			if err := bump(); err != nil {
				return err
			}
			return addOne()
		}},
	} {
		added, err := best(runs, sync, revert, c.before)
		if err != nil {
			return err
		}
		fmt.Printf("  %s %v  cpu x%.2f of nft add element (target <= 1)\n", c.name, added, ratio(added, hand))
	}

	fresh, err := best(runs, inNS(empty, "nft", "-f", nftFile), func() error {
		return quiet(inNS(empty, "nft", "delete", "table", "inet", "pdsafelist")...)
	}, nil)
	if err != nil {
		return err
	}
	fmt.Printf("  nft -f into an empty namespace    %v\n", fresh)
	var nochange []measure
	for _, c := range []struct {
		name   string
		before func() error
	}{
		{"sync, no change                 ", nil},
		{"  after a change elsewhere (full read)", bump},
	} {
		m, err := best(runs, sync, nil, c.before)
		if err != nil {
			return err
		}
		nochange = append(nochange, m)
		fmt.Printf("  %s %v  cpu x%.2f of a fresh nft -f (target <= 0.5)\n", c.name, m, ratio(m, fresh))
	}
	common, full := nochange[0], nochange[1]
	fmt.Printf("    the full read's extra: user %+.3fs (ours: decode, compare), sys %+.3fs (the kernel's dump)\n",
		(full.cpu - full.sys - common.cpu + common.sys).Seconds(), (full.sys - common.sys).Seconds())
	return nil
}

func ratio(a, b measure) float64 { return a.cpu.Seconds() / b.cpu.Seconds() }

// best runs argv runs times, with before and after (not measured) around
// each run, and keeps the run with the least CPU.
func best(runs int, argv []string, after, before func() error) (measure, error) {
	var m measure
	for i := range runs {
		if before != nil {
			if err := before(); err != nil {
				return m, err
			}
		}
		got, err := once(argv)
		if err != nil {
			return m, err
		}
		if i == 0 || got.cpu < m.cpu {
			m = got
		}
		if after != nil {
			if err := after(); err != nil {
				return m, err
			}
		}
	}
	return m, nil
}

// once runs argv through a fresh copy of this program, which waits for it
// and reports its CPU time, its children's included.
func once(argv []string) (measure, error) {
	self, err := os.Executable()
	if err != nil {
		return measure{}, err
	}
	usage, err := os.CreateTemp("", "pdsafelist-nftlive-rusage")
	if err != nil {
		return measure{}, err
	}
	usage.Close()
	defer os.Remove(usage.Name())
	cmd := exec.Command(self, argv...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Env = append(os.Environ(), rusageEnv+"="+usage.Name())
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return measure{}, fmt.Errorf("%s: %v: %s", strings.Join(argv, " "), err, out.String())
	}
	wall := time.Since(start)
	b, err := os.ReadFile(usage.Name())
	if err != nil {
		return measure{}, err
	}
	var cpuNS, sysNS int64
	if _, err := fmt.Sscan(string(b), &cpuNS, &sysNS); err != nil {
		return measure{}, fmt.Errorf("rusage %q: %v", b, err)
	}
	return measure{cpu: time.Duration(cpuNS), sys: time.Duration(sysNS), wall: wall}, nil
}

// spawn runs args as a child and writes its CPU time and the system part
// of it (ns), the children it waited for included, to the file out.
func spawn(out string, args []string) int {
	if len(args) == 0 {
		return 2
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = slices.DeleteFunc(os.Environ(), func(e string) bool { return strings.HasPrefix(e, rusageEnv+"=") })
	err := cmd.Run()
	if cmd.ProcessState == nil {
		fmt.Fprintln(os.Stderr, "spawn:", err)
		return 2
	}
	cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	if err := os.WriteFile(out, fmt.Appendf(nil, "%d %d\n", cpu.Nanoseconds(), cmd.ProcessState.SystemTime().Nanoseconds()), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "spawn:", err)
		return 2
	}
	return cmd.ProcessState.ExitCode()
}
