package nftables

import (
	"context"
	"encoding/binary"
	"fmt"
	gnft "github.com/google/nftables"
	"golang.org/x/sys/unix"
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
				if err := s.check(context.Background(), s.opts.Path, [][]plan.Entry{entries}, group(entries)); err != nil {
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

// oneSet is n distinct, non-adjacent global /32s in one ingress set: the
// shape of the CLI bench (scripts/bench/nftlive), whose one set of n
// prefixes is the kernel's worst case (a dump walks one tree).
func oneSet(n int) []plan.DesiredSet {
	r := rand.New(rand.NewPCG(1, 2))
	seen := map[uint32]bool{}
	ps := make([]netip.Prefix, 0, n)
	for len(ps) < n {
		v := r.Uint32()&0x00ffffff | uint32(11+r.IntN(89))<<24
		if seen[v] || seen[v-1] || seen[v+1] {
			continue
		}
		seen[v] = true
		ps = append(ps, netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), 32))
	}
	ps, _ = plan.Aggregate(ps)
	return []plan.DesiredSet{{Name: "big", Direction: plan.Ingress, Protocol: plan.TCP, Ports: []uint16{443}, Prefixes: ps}}
}

// loadedOne writes the file of oneSet(n), loads it in a fresh network
// namespace and returns the sink (apply=true) and the desired sets.
func loadedOne(b *testing.B, n int) (*Sink, []plan.DesiredSet) {
	testutil.Integration(b, true, "nft", "ip")
	ns := fmt.Sprintf("pdsl-nftfull-%d-%d", os.Getpid(), n)
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		b.Fatalf("ip netns add: %v: %s", err, out)
	}
	b.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	s, err := New(Options{Path: filepath.Join(b.TempDir(), "big.nft"), Table: "pdsafelist", Enforce: "ingress", Apply: true, Check: "never", Netns: ns}, "bench")
	if err != nil {
		b.Fatal(err)
	}
	desired := oneSet(n)
	if err := s.Apply(context.Background(), sinktest.Plan(b, sink.Step{Sink: s}, desired, plan.State{})); err != nil {
		b.Fatal(err)
	}
	return s, desired
}

// rusage is this process's user and system CPU time so far.
func rusage() (user, sys time.Duration) {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}

// cpuMeter sums user and system CPU over the timed part of a benchmark
// and reports both per op: the kernel's share (system: the dump) apart
// from ours (user: decode, compare, GC).
type cpuMeter struct{ user, sys time.Duration }

func (m *cpuMeter) time(f func()) {
	u0, s0 := rusage()
	f()
	u1, s1 := rusage()
	m.user += u1 - u0
	m.sys += s1 - s0
}

func (m *cpuMeter) report(b *testing.B) {
	b.ReportMetric(float64(m.user.Milliseconds())/float64(b.N), "user-ms/op")
	b.ReportMetric(float64(m.sys.Milliseconds())/float64(b.N), "sys-ms/op")
}

// BenchmarkDump is the kernel's dump of one interval set of n prefixes
// (2n elements), decoded: the system time per op is the kernel's, whose
// growth with n shows whether the dump is quadratic.
func BenchmarkDump(b *testing.B) {
	for _, n := range []int{25_000, 50_000, 100_000, 200_000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			s, _ := loadedOne(b, n)
			c, err := s.dial()
			if err != nil {
				b.Fatal(err)
			}
			defer c.close()
			var m cpuMeter
			for b.Loop() {
				m.time(func() {
					els, err := c.elements(s.opts.Table, "big_tcp443_in_v4")
					if err != nil || els.n < 2*n {
						b.Fatalf("%d elements, %v; want %d or more", els.n, err, 2*n)
					}
				})
			}
			m.report(b)
		})
	}
}

// BenchmarkFullRead100k is the read and plan of a no-change sync that
// cannot trust its stamp (the ruleset's generation moved): Current dumps
// the whole 100,000-prefix table and compares it with the file.
func BenchmarkFullRead100k(b *testing.B) {
	s, desired := loadedOne(b, 100_000)
	ctx := context.Background()
	var m cpuMeter
	for b.Loop() {
		// A stamp would stand in for the dump.
		_ = os.Remove(s.stampPath())
		dumps := s.dumps
		m.time(func() {
			st, err := s.Current(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if p := sinktest.Plan(b, sink.Step{Sink: s}, desired, st); p.HasChanges() {
				b.Fatalf("no-change run has changes: %d add, %d remove, drift %q", len(p.Add), len(p.Remove), p.Drift)
			}
		})
		if s.dumps != dumps+1 {
			b.Fatalf("%d dumps; want 1", s.dumps-dumps)
		}
	}
	m.report(b)
}

// dumpMessages is an element dump of n non-adjacent IPv4 /32s as the
// kernel sends it: highest key first, an end key before each start, in
// messages of at most 32 KB.
func dumpMessages(n int) [][]byte {
	attr := func(b []byte, typ uint16, v []byte) []byte {
		b = binary.NativeEndian.AppendUint16(b, uint16(4+len(v)))
		b = binary.NativeEndian.AppendUint16(b, typ)
		b = append(b, v...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
		return b
	}
	elem := func(a uint32, end bool) []byte {
		key := attr(nil, unix.NFTA_SET_ELEM_KEY|unix.NLA_F_NESTED, attr(nil, unix.NFTA_DATA_VALUE, binary.BigEndian.AppendUint32(nil, a)))
		if end {
			key = attr(key, unix.NFTA_SET_ELEM_FLAGS, binary.BigEndian.AppendUint32(nil, unix.NFT_SET_ELEM_INTERVAL_END))
		}
		return attr(nil, unix.NFTA_LIST_ELEM, key)
	}
	var msgs [][]byte
	var list []byte
	flush := func() {
		data := append([]byte{unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0}, attr(nil, unix.NFTA_SET_ELEM_LIST_ELEMENTS|unix.NLA_F_NESTED, list)...)
		m := binary.NativeEndian.AppendUint32(nil, uint32(unix.NLMSG_HDRLEN+len(data)))
		m = binary.NativeEndian.AppendUint16(m, unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_NEWSETELEM)
		m = binary.NativeEndian.AppendUint16(m, unix.NLM_F_MULTI)
		m = binary.NativeEndian.AppendUint32(m, 1)
		m = binary.NativeEndian.AppendUint32(m, 0)
		msgs = append(msgs, append(m, data...))
		list = nil
	}
	for i := n - 1; i >= 0; i-- {
		a := 0x0b000000 + uint32(i)*4
		for _, e := range [][]byte{elem(a+1, true), elem(a, false)} {
			if len(list)+len(e) > 32<<10-64 {
				flush()
			}
			list = append(list, e...)
		}
	}
	flush()
	return msgs
}

// BenchmarkDecodeDump100k is our share of a full read's dump: decoding
// 200,000 elements (100,000 prefixes) from the receive buffers and
// turning them into the set's intervals, with no kernel in the way.
func BenchmarkDecodeDump100k(b *testing.B) {
	msgs := dumpMessages(100_000)
	set := &gnft.Set{Name: "big_tcp443_in_v4", Interval: true, AutoMerge: true, KeyType: gnft.TypeIPAddr}
	b.ReportAllocs()
	for b.Loop() {
		pts := &points{}
		for _, m := range msgs {
			if _, err := pts.readDump(m, 1); err != nil {
				b.Fatal(err)
			}
		}
		lb, err := setBlock(set, pts)
		if err != nil || len(lb.spans) != 100_000 {
			b.Fatalf("%d spans, %v", len(lb.spans), err)
		}
	}
}
