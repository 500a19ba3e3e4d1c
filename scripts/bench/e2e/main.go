// Command e2e measures the whole CLI path at scale against FireHOL's
// iprange on the same addresses, in the same run.
//
//	go run ./scripts/bench/e2e -n 1000000
//
// It builds pdsafelist, writes n random public IPv4 addresses as JSON lists
// of at most 100,000 entries (the per-list cap) served over HTTPS from this
// process, and runs, as child processes: `pdsafelist resolve -o json`,
// `pdsafelist sync --dry-run` into an nftables file sink, and
// `iprange --optimize` on the same addresses. It reports each child's CPU
// time (user+sys), wall time and peak RSS, the CPU ratio to iprange, and
// checks that all three produce the same CIDRs.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pdsafelist/pdsafelist/pkg/sink/nftables"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/standin"
)

const perList = 100_000

// onlyRun and profileDir are the -only and -profile flags; textLists and
// sinkTypes -text and -sinks.
var (
	onlyRun, profileDir, prebuilt string
	serve, textLists, netnsOption bool
	sinkTypes                     []string
)

func main() {
	if out := os.Getenv(rusageEnv); out != "" {
		os.Exit(spawn(out, os.Args[1:]))
	}
	n := flag.Int("n", 1_000_000, "random public IPv4 addresses")
	runs := flag.Int("runs", 1, "runs of each command; the lowest CPU time counts")
	latency := flag.Bool("latency", false, "instead: CLI resolve of every default set, US and EU, against the stand-in with 50 ms a DNS answer")
	only := flag.String("only", "", "run only resolve or only sync (besides iprange)")
	serveFlag := flag.Bool("serve", false, "set up the lists and config, print the commands and serve until interrupted (for perf, GODEBUG=gctrace=1 and the like)")
	binFlag := flag.String("bin", "", "measure this pdsafelist binary instead of building ./cmd/pdsafelist (a baseline)")
	profDir := flag.String("profile", "", "write pprof CPU and heap profiles (DIR/resolve.cpu, .mem; DIR/sync.*, of the last sync run) into this directory")
	iptNetNS := flag.Bool("netns-option", true, "give the iptables sink its netns option (turn off for a -bin that predates it)")
	text := flag.Bool("text", false, "serve the lists as text, one address a line, instead of JSON arrays")
	sinks := flag.String("sinks", "", "instead of the sync figures: a first, a no-change, a one-change and a one-gone sync into each of these sinks (nftables, template, iptables; iptables needs root and makes a network namespace), peak RSS of the run and its children")
	flag.Parse()
	textLists, netnsOption = *text, *iptNetNS
	if *sinks != "" {
		sinkTypes = strings.Split(*sinks, ",")
	}
	if *only != "" && *only != "resolve" && *only != "sync" {
		fmt.Fprintln(os.Stderr, "e2e: -only: want resolve or sync")
		os.Exit(2)
	}
	onlyRun, profileDir, serve, prebuilt = *only, *profDir, *serveFlag, *binFlag
	if *latency {
		if err := resolveLatency(*runs); err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*n, *runs); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
}

type measure struct {
	cpu, wall time.Duration
	rssMB     float64
}

func (m measure) String() string {
	return fmt.Sprintf("cpu %6.2fs  wall %6.2fs  peak RSS %6.1f MB", m.cpu.Seconds(), m.wall.Seconds(), m.rssMB)
}

func run(n, runs int) error {
	dir, err := os.MkdirTemp("", "pdsafelist-e2e")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "pdsafelist")
	if prebuilt != "" {
		bin = prebuilt
	} else if out, err := exec.Command("go", "build", "-o", bin, "./cmd/pdsafelist").CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v: %s", err, out)
	}

	// First octets 11..99 hold no special-purpose range, so every address
	// passes the same checks a published list does.
	r := rand.New(rand.NewPCG(1, 2))
	addrs := make([]string, n)
	for i := range addrs {
		v := r.Uint32()&0x00ffffff | uint32(11+r.IntN(89))<<24
		addrs[i] = netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}).String()
	}
	txt := filepath.Join(dir, "addrs.txt")
	if err := os.WriteFile(txt, []byte(strings.Join(addrs, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	mux := http.NewServeMux()
	var urls []string
	srv := httptest.NewUnstartedServer(mux)
	body := func(as []string) []byte {
		if textLists {
			return []byte(strings.Join(as, "\n") + "\n")
		}
		b, _ := json.Marshal(as)
		return b
	}
	// first is the first list's body as served, and firstList sets it:
	// the list as made, or with its last address swapped for another.
	var first atomic.Pointer[[]byte]
	var firstList func(swap string)
	for i := 0; i*perList < n; i++ {
		b := body(addrs[i*perList : min(n, (i+1)*perList)])
		path := fmt.Sprintf("/list/%d", i)
		if i == 0 {
			// The first list can change between runs: sinkRuns swaps
			// one of its addresses for a new one.
			first.Store(&b)
			mux.HandleFunc(path, func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(*first.Load()) })
			firstList = func(swap string) {
				as := slices.Clone(addrs[:min(n, perList)])
				if swap != "" {
					as[len(as)-1] = swap
				}
				b := body(as)
				first.Store(&b)
			}
		} else {
			mux.HandleFunc(path, func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(b) })
		}
		urls = append(urls, path)
	}
	srv.StartTLS()
	defer srv.Close()
	for i := range urls {
		urls[i] = srv.URL + urls[i]
	}
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		return err
	}
	cfg := filepath.Join(dir, "pdsafelist.yaml")
	format := "json"
	if textLists {
		format = "text"
	}
	conf := fmt.Sprintf("sets: [big]\nca_file: %s\nstate_dir: %s\nhttp: {max_bytes: 104857600, timeout: 5m}\ntimeout: 10m\ncatalog:\n  big: {direction: ingress, ports: [443], sources: [%s]}\n",
		ca, filepath.Join(dir, "state"), listSources(urls, format))
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		return err
	}

	fmt.Printf("%d addresses in %d HTTPS lists (%s)\n", n, len(urls), format)
	if len(sinkTypes) > 0 {
		return sinkRuns(bin, cfg, dir, firstList)
	}
	if serve {
		fmt.Printf("  %s --config %s resolve -o json\n  iprange --optimize %s\nserving until interrupted\n", bin, cfg, txt)
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		<-sig
		return nil
	}
	ipr, iprOut, err := best(runs, "iprange", "--optimize", txt)
	if err != nil {
		return err
	}
	fmt.Printf("  iprange --optimize         %v\n", ipr)
	want := cidrs(iprOut)

	if onlyRun != "sync" {
		if err := resolveRun(runs, bin, cfg, ipr, want); err != nil {
			return err
		}
	}
	if onlyRun != "resolve" {
		if err := syncRun(runs, bin, cfg, dir, ipr, want); err != nil {
			return err
		}
	}
	fmt.Println("  targets: resolve and dry run cpu <= x2 and peak RSS < 150 MB, CIDRs identical to iprange's; sync peak RSS < 400 MB")
	return nil
}

func resolveRun(runs int, bin, cfg string, ipr measure, want []string) error {
	res, resOut, err := best(runs, bin, "--config", cfg, "resolve", "-o", "json")
	if err != nil {
		return err
	}
	var doc struct {
		Sets []struct {
			Prefixes []string `json:"prefixes"`
		} `json:"sets"`
	}
	if err := json.Unmarshal(resOut, &doc); err != nil || len(doc.Sets) != 1 {
		return fmt.Errorf("resolve JSON: %v", err)
	}
	fmt.Printf("  resolve -o json            %v  cpu x%.2f  (%d bytes out)\n", res, ratio(res, ipr), len(resOut))
	return same("resolve", want, doc.Sets[0].Prefixes)
}

func syncRun(runs int, bin, cfg, dir string, ipr measure, want []string) error {
	nft := filepath.Join(dir, "out.nft")
	syn, synOut, err := best(runs, bin, "--config", cfg, "sync", "--dry-run", "--sink", "nftables:"+nft)
	if err != nil {
		return err
	}
	fmt.Printf("  sync --dry-run (nftables)  %v  cpu x%.2f\n", syn, ratio(syn, ipr))
	// The plan's lines read "  + big  CIDR  ingress tcp/443".
	var planned []string
	for l := range strings.Lines(string(synOut)) {
		if f := strings.Fields(l); len(f) >= 3 && f[0] == "+" && f[1] == "big" {
			planned = append(planned, f[2])
		}
	}
	if err := same("sync --dry-run plan", want, planned); err != nil {
		return err
	}
	for i, what := range []string{"sync, first run       ", "sync, no-change run   "} {
		m, _, err := best(1, bin, "--config", cfg, "sync", "--sink", "nftables:"+nft)
		if err != nil {
			return err
		}
		fmt.Printf("  %s     %v  cpu x%.2f\n", what, m, ratio(m, ipr))
		if i > 0 {
			continue
		}
		data, err := os.ReadFile(nft)
		if err != nil {
			return err
		}
		f, err := nftables.Parse(data)
		if err != nil {
			return fmt.Errorf("the synced file: %v", err)
		}
		var held []string
		for _, e := range f.Entries {
			held = append(held, e.Prefix.String())
		}
		if err := same("sync, the file's elements", want, held); err != nil {
			return err
		}
	}
	return nil
}

// listSources is the config's sources list for the served lists.
func listSources(urls []string, format string) string {
	out := make([]string, len(urls))
	for i, u := range urls {
		out[i] = fmt.Sprintf("{type: http, url: %q, format: %s}", u, format)
	}
	return strings.Join(out, ", ")
}

// sinkRuns runs a first, a no-change, a one-change sync (the everyday
// run: one address of the first list swapped for a new one, so one is
// added and the other retained) and a one-gone sync (the new address
// leaves the list and its grace is over, so it is removed) into each sink
// of -sinks and reports each run's CPU and peak RSS (the run's and its
// children's, such as ipset restore); firstList sets the first list.
// Target: < 300 MB for every sink, first and no-change run alike.
func sinkRuns(bin, cfg, dir string, firstList func(swap string)) error {
	for k, typ := range sinkTypes {
		var spec string
		switch typ {
		case "nftables":
			spec = "nftables:" + filepath.Join(dir, "out.nft")
		case "template":
			spec = "template:" + filepath.Join(dir, "out.txt")
		case "iptables":
			ns := fmt.Sprintf("pdsl-e2e-%d", os.Getpid())
			if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
				return fmt.Errorf("ip netns add (iptables needs root): %v: %s", err, out)
			}
			defer exec.Command("ip", "netns", "del", ns).Run()
			in := "ip netns exec " + ns + " "
			opts := url.Values{"iptables": {in + "iptables"}, "ip6tables": {in + "ip6tables"},
				"iptables-restore": {in + "iptables-restore"}, "ip6tables-restore": {in + "ip6tables-restore"},
				"ipset": {in + "ipset"}}
			if netnsOption {
				opts["netns"] = []string{ns}
			}
			spec = "iptables?" + opts.Encode()
		default:
			return fmt.Errorf("-sinks: unknown sink %q (want nftables, template or iptables)", typ)
		}
		// Each sink's new address is its own (first octet 101, outside
		// the lists' 11-99, none adjacent to another), so the address
		// the sink before retained is no change.
		firstList("")
		for i, what := range []string{"first run", "no change", "one change", "one gone"} {
			args := []string{"--config", cfg, "sync", "--sink", spec}
			switch i {
			case 2:
				firstList(fmt.Sprintf("101.0.%d.1", k+1))
			case 3:
				// The new address leaves the list again, and its grace
				// ends before the run: it is removed.
				firstList("")
				time.Sleep(1100 * time.Millisecond)
				args = append(args, "--grace", "1s")
			}
			m, out, err := best(1, bin, args...)
			if err != nil {
				return err
			}
			fmt.Printf("  %-9s %-10s %v\n", typ, what, m)
			if i == 1 && !strings.Contains(string(out), "No changes") {
				return fmt.Errorf("%s: the second sync was not a no-change run:\n%.400s", typ, out)
			}
			if i == 2 && !strings.Contains(string(out), "Plan: 1 to add, 0 to remove") {
				return fmt.Errorf("%s: the third sync did not add one address:\n%.400s", typ, out)
			}
			if i == 3 && !strings.Contains(string(out), "Plan: 0 to add, 1 to remove") {
				return fmt.Errorf("%s: the fourth sync did not remove one address:\n%.400s", typ, out)
			}
		}
	}
	fmt.Println("  target: peak RSS < 300 MB for every sink, first and no-change run (one change and one gone: the everyday runs)")
	return nil
}

// resolveLatency runs `pdsafelist resolve --region all` against the
// stand-in, whose DNS answers each take 50 ms and carry no RA bit, and
// `pdsafelist version` for the process start-up; the median wall times
// count. Target: resolve <= 2.2 x 50 ms + start-up.
func resolveLatency(runs int) error {
	const delay = 50 * time.Millisecond
	dir, err := os.MkdirTemp("", "pdsafelist-e2e")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "pdsafelist")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/pdsafelist").CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v: %s", err, out)
	}
	s, err := standin.Start(standin.Options{Snapshot: "testdata/snapshot", Delay: delay})
	if err != nil {
		return err
	}
	defer s.Close()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, s.CAPEM(), 0o644); err != nil {
		return err
	}
	runs = max(runs, 5)
	median := func(name string, args ...string) (time.Duration, time.Duration, error) {
		var walls, cpus []time.Duration
		for range runs {
			cmd := exec.Command(name, args...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			start := time.Now()
			if err := cmd.Run(); err != nil {
				return 0, 0, fmt.Errorf("%v: %v: %s", args, err, stderr.String())
			}
			walls = append(walls, time.Since(start))
			cpus = append(cpus, cmd.ProcessState.UserTime()+cmd.ProcessState.SystemTime())
		}
		slices.Sort(walls)
		slices.Sort(cpus)
		return walls[len(walls)/2], cpus[len(cpus)/2], nil
	}
	env := []string{"--config", filepath.Join(dir, "none.yaml")}
	if err := os.WriteFile(env[1], nil, 0o644); err != nil {
		return err
	}
	vw, vc, err := median(bin, "version")
	if err != nil {
		return err
	}
	rw, rc, err := median(bin, append(append([]string{"resolve", "-o", "json", "--region", "all"}, s.Flags(ca)...), env...)...)
	if err != nil {
		return err
	}
	fmt.Printf("median of %d runs, %v added to every DNS answer\n", runs, delay)
	fmt.Printf("  version (start-up)        wall %6.1f ms  cpu %6.1f ms\n", ms(vw), ms(vc))
	fmt.Printf("  resolve --region all      wall %6.1f ms  cpu %6.1f ms\n", ms(rw), ms(rc))
	fmt.Printf("  (resolve - start-up) / 50 ms = %.2f round trips (target <= 2.2)\n", float64(rw-vw)/float64(delay))
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func ratio(a, b measure) float64 { return a.cpu.Seconds() / b.cpu.Seconds() }

// best runs a command runs times and keeps the run with the least CPU.
//
// Each run goes through a fresh copy of this program (spawn): Linux hands
// a process the peak RSS of the memory it replaced at exec, and a child
// forked straight from this process, which holds every list and the last
// document read, would report this process's peak as its own (iprange
// showed 87 MB where it uses 17).
func best(runs int, name string, args ...string) (measure, []byte, error) {
	self, err := os.Executable()
	if err != nil {
		return measure{}, nil, err
	}
	var m measure
	var out []byte
	for i := range runs {
		var stdout, stderr bytes.Buffer
		usage, err := os.CreateTemp("", "pdsafelist-e2e-rusage")
		if err != nil {
			return m, nil, err
		}
		usage.Close()
		defer os.Remove(usage.Name())
		cmd := exec.Command(self, append([]string{name}, args...)...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		cmd.Env = append(os.Environ(), rusageEnv+"="+usage.Name())
		if profileDir != "" && name != "iprange" && i == runs-1 {
			base := filepath.Join(profileDir, args[2])
			cmd.Env = append(cmd.Env, "PDSAFELIST_CPUPROFILE="+base+".cpu", "PDSAFELIST_MEMPROFILE="+base+".mem")
		}
		start := time.Now()
		if err := cmd.Run(); err != nil {
			return m, nil, fmt.Errorf("%s: %v: %s", name, err, stderr.String())
		}
		wall := time.Since(start)
		b, err := os.ReadFile(usage.Name())
		if err != nil {
			return m, nil, err
		}
		var cpuNS, rssKB int64
		if _, err := fmt.Sscan(string(b), &cpuNS, &rssKB); err != nil {
			return m, nil, fmt.Errorf("%s: rusage %q: %v", name, b, err)
		}
		got := measure{wall: wall, cpu: time.Duration(cpuNS), rssMB: float64(rssKB) / 1024}
		if i == 0 || got.cpu < m.cpu {
			m, out = got, stdout.Bytes()
		}
	}
	return m, out, nil
}

// rusageEnv names the file where spawn writes its child's CPU time and
// peak RSS.
const rusageEnv = "PDSAFELIST_E2E_RUSAGE"

// spawn runs args as a child of this small process and writes the child's
// CPU time (ns) and peak RSS (KiB) to the file out; it returns the child's
// exit code.
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
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	if err := os.WriteFile(out, fmt.Appendf(nil, "%d %d\n", cpu.Nanoseconds(), ru.Maxrss), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "spawn:", err)
		return 2
	}
	return cmd.ProcessState.ExitCode()
}

// cidrs reads iprange's output, where a single address has no /32.
func cidrs(b []byte) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		s := strings.TrimSpace(sc.Text())
		if s == "" {
			continue
		}
		if !strings.Contains(s, "/") {
			s += "/32"
		}
		out = append(out, s)
	}
	return out
}

func same(what string, want, got []string) error {
	g := slices.Clone(got)
	for i, s := range g {
		if !strings.Contains(s, "/") {
			g[i] = s + "/32"
		}
	}
	slices.Sort(g)
	w := slices.Clone(want)
	slices.Sort(w)
	if !slices.Equal(w, g) {
		return fmt.Errorf("%s: %d CIDRs differ from iprange's %d", what, len(g), len(w))
	}
	fmt.Printf("  %s: %d CIDRs, identical to iprange's\n", what, len(g))
	return nil
}
