package nftables

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/sink/sinktest"
	"github.com/pdsafelist/pdsafelist/pkg/testutil"
)

// bigSet is n distinct global /32s in 20.0.0.0/8 onwards, split over an
// ingress and an egress set.
func bigSets(n int) []plan.DesiredSet {
	r := rand.New(rand.NewPCG(3, 5))
	seen := map[netip.Prefix]bool{}
	var in, eg []netip.Prefix
	for len(seen) < n {
		v := r.Uint32()&0x3fffffff | 0x14000000 // 20.0.0.0 - 63.255.255.255
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), 32)
		if seen[p] {
			continue
		}
		seen[p] = true
		if len(seen)%2 == 0 {
			in = append(in, p)
		} else {
			eg = append(eg, p)
		}
	}
	in, _ = plan.Aggregate(in)
	eg, _ = plan.Aggregate(eg)
	return []plan.DesiredSet{
		{Name: "webhooks", Direction: plan.Ingress, Protocol: plan.TCP, Ports: []uint16{443}, Prefixes: in},
		{Name: "api", Direction: plan.Egress, Protocol: plan.TCP, Ports: []uint16{443}, Prefixes: eg},
	}
}

// BenchmarkPlanRender100k diffs 100,000 prefixes against a sink holding
// 90% of them and renders the resulting file: the work of one sync.
func BenchmarkPlanRender100k(b *testing.B) {
	desired := bigSets(100_000)
	s := &Sink{opts: Options{Table: "pdsafelist", Enforce: "ingress"}}
	step := sink.Step{Sink: s}
	full := sinktest.Plan(b, step, desired, plan.State{}).Add
	current := plan.State{Owned: full[:len(full)*9/10]}
	b.ReportAllocs()
	for b.Loop() {
		p := sinktest.Plan(b, step, desired, current)
		if len(s.render(p.Result())) == 0 {
			b.Fatal("empty render")
		}
	}
}

// loaded100k writes the 100,000-prefix file, loads it in a fresh network
// namespace and returns the sink (apply=true) with the desired sets.
func loaded100k(b *testing.B) (*Sink, []plan.DesiredSet) {
	testutil.Integration(b, true, "nft", "ip")
	ns := fmt.Sprintf("pdsl-nftbench-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		b.Fatalf("ip netns add: %v: %s", err, out)
	}
	b.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	path := filepath.Join(b.TempDir(), "big.nft")
	s, err := New(Options{Path: path, Table: "pdsafelist", Enforce: "ingress", Apply: true, Check: "never", Netns: ns}, "bench")
	if err != nil {
		b.Fatal(err)
	}
	desired := bigSets(100_000)
	p := sinktest.Plan(b, sink.Step{Sink: s}, desired, plan.State{})
	if err := s.Apply(context.Background(), p); err != nil {
		b.Fatal(err)
	}
	return s, desired
}

// BenchmarkNftLoad100k loads the rendered 100,000-prefix file with nft -f
// in a fresh network namespace.
func BenchmarkNftLoad100k(b *testing.B) {
	s, _ := loaded100k(b)
	for b.Loop() {
		if out, err := s.run(context.Background(), s.cmd("-f", s.opts.Path), nil); err != nil {
			b.Fatalf("nft -f: %v: %s", err, firstLine(out, err))
		}
	}
}

// BenchmarkNoChangeApply100k is the read and plan of a sync with nothing
// to do at 100,000 prefixes with apply=true, the live check included,
// against an nft -f of the same file over the loaded table (a delete and
// re-create, about twice a load into an empty namespace) timed in the same
// iteration: x-load is the ratio of wall times, cpu-x-load of CPU times.
// The reload moves the ruleset's generation, so every read here is a full
// netlink read, never the stamp; scripts/bench/nftlive measures the CLI
// against a load into an empty namespace.
func BenchmarkNoChangeApply100k(b *testing.B) {
	s, desired := loaded100k(b)
	ctx := context.Background()
	var load, check, loadCPU, checkCPU time.Duration
	for b.Loop() {
		t0, c0 := time.Now(), cpuTime()
		if out, err := s.run(ctx, s.cmd("-f", s.opts.Path), nil); err != nil {
			b.Fatalf("nft -f: %v: %s", err, firstLine(out, err))
		}
		t1, c1 := time.Now(), cpuTime()
		st, err := s.Current(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if p := sinktest.Plan(b, sink.Step{Sink: s}, desired, st); p.HasChanges() {
			b.Fatalf("no-change run has changes: %d add, %d remove, drift %q", len(p.Add), len(p.Remove), p.Drift)
		}
		load, check = load+t1.Sub(t0), check+time.Since(t1)
		loadCPU, checkCPU = loadCPU+c1-c0, checkCPU+cpuTime()-c1
	}
	b.ReportMetric(load.Seconds()/float64(b.N), "load-s/op")
	b.ReportMetric(check.Seconds()/float64(b.N), "nochange-s/op")
	b.ReportMetric(check.Seconds()/load.Seconds(), "x-load")
	// CPU time (ours and nft's) holds still on a busy machine.
	b.ReportMetric(checkCPU.Seconds()/loadCPU.Seconds(), "cpu-x-load")
}

// cpuTime is the CPU time of this process and its finished children.
func cpuTime() time.Duration {
	var self, kids syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &kids)
	return time.Duration(self.Utime.Nano() + self.Stime.Nano() + kids.Utime.Nano() + kids.Stime.Nano())
}

// BenchmarkCheck1M is the check of the 1,000,000-prefix file in a fresh
// network namespace, in pieces of checkPieceSize elements and whole:
// nft-cpu-s is the nft children's CPU time per check, nft-peak-MB the
// largest one's peak RSS, both as GNU time reports them (a child forked
// from this process would report this process's peak as its own).
func BenchmarkCheck1M(b *testing.B) {
	testutil.Integration(b, true, "nft", "ip", "time")
	ns := fmt.Sprintf("pdsl-nftcheck-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		b.Fatalf("ip netns add: %v: %s", err, out)
	}
	b.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	dir := b.TempDir()
	usage := filepath.Join(dir, "usage")
	timeCmd, _ := exec.LookPath("time")
	s, err := New(Options{Path: filepath.Join(dir, "big.nft"), Table: "pdsafelist", Enforce: "ingress", Check: "always",
		Nft: timeCmd + " -a -o " + usage + " -f %U,%S,%M ip netns exec " + ns + " nft"}, "bench")
	if err != nil {
		b.Fatal(err)
	}
	entries := sinktest.Plan(b, sink.Step{Sink: s}, bigSets(1_000_000), plan.State{}).Result()
	if err := os.WriteFile(s.opts.Path, s.render(entries), 0o644); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		size int
	}{{"pieces", checkPieceSize}, {"whole", len(entries)}} {
		b.Run(c.name, func(b *testing.B) {
			old := checkPieceSize
			checkPieceSize = c.size
			defer func() { checkPieceSize = old }()
			_ = os.Remove(usage)
			for b.Loop() {
				if err := s.check(context.Background(), s.opts.Path, entries, group(entries)); err != nil {
					b.Fatal(err)
				}
			}
			data, err := os.ReadFile(usage)
			if err != nil {
				b.Fatal(err)
			}
			var cpu, peak float64
			for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
				var user, sys, rssKB float64
				if _, err := fmt.Sscanf(l, "%g,%g,%g", &user, &sys, &rssKB); err != nil {
					b.Fatalf("time: %q: %v", l, err)
				}
				cpu += user + sys
				peak = max(peak, rssKB/1024)
			}
			b.ReportMetric(cpu/float64(b.N), "nft-cpu-s/op")
			b.ReportMetric(peak, "nft-peak-MB")
		})
	}
}
