package nftables

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
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
		{Name: "webhooks", Direction: plan.Ingress, Protocol: "tcp", Ports: []uint16{443}, Prefixes: in},
		{Name: "api", Direction: plan.Egress, Protocol: "tcp", Ports: []uint16{443}, Prefixes: eg},
	}
}

// BenchmarkPlanRender100k diffs 100,000 prefixes against a sink holding
// 90% of them and renders the resulting file: the work of one sync.
func BenchmarkPlanRender100k(b *testing.B) {
	desired := bigSets(100_000)
	s := &Sink{opts: Options{Table: "pdsafelist", Enforce: "ingress"}}
	full := plan.Calculate("b", desired, plan.State{}, nil).Add
	current := plan.State{Owned: full[:len(full)*9/10]}
	b.ReportAllocs()
	for b.Loop() {
		p := plan.Calculate("b", desired, current, nil)
		if len(s.render(p.Result())) == 0 {
			b.Fatal("empty render")
		}
	}
}

// BenchmarkNftLoad100k loads the rendered 100,000-prefix file with nft -f
// in a fresh network namespace.
func BenchmarkNftLoad100k(b *testing.B) {
	testutil.Integration(b, true, "nft", "ip")
	ns := fmt.Sprintf("pdsl-nftbench-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		b.Fatalf("ip netns add: %v: %s", err, out)
	}
	b.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	path := filepath.Join(b.TempDir(), "big.nft")
	s, err := New(Options{Path: path, Table: "pdsafelist", Enforce: "ingress", Check: "never", Nft: "ip netns exec " + ns + " nft"}, "bench")
	if err != nil {
		b.Fatal(err)
	}
	p := plan.Calculate(s.Name(), bigSets(100_000), plan.State{}, nil)
	if err := os.WriteFile(path, s.render(p.Result()), 0o644); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if out, err := s.run(context.Background(), s.cmd("-f", path), nil); err != nil {
			b.Fatalf("nft -f: %v: %s", err, firstLine(out, err))
		}
	}
}
