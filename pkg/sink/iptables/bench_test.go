package iptables

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/sink/sinktest"
	"github.com/pdsafelist/pdsafelist/pkg/testutil"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/netns"
)

// benchApply applies 10,000 IPv4 prefixes in a fresh namespace, one sync
// per iteration (read, plan, apply). Iterations alternate between two lists that share no
// address, so every apply really replaces all 10,000.
func benchApply(b *testing.B, threshold int) {
	testutil.Integration(b, true, "iptables", "ip6tables", "iptables-restore", "ip6tables-restore", "ipset", "ip")
	p := netns.New(b)
	s := liveIn(b, p.Server, func(o *Options) { o.Enforce = "ingress"; o.IPSetThreshold = threshold })
	all := bigPrefixes(20_000)
	lists := [2][]netip.Prefix{make([]netip.Prefix, 0, 10_000), make([]netip.Prefix, 0, 10_000)}
	for i, pr := range all {
		lists[i%2] = append(lists[i%2], pr)
	}
	ctx := context.Background()
	i := 0
	var read, apply time.Duration
	for b.Loop() {
		d := []plan.DesiredSet{{Name: "webhooks", Direction: plan.Ingress, Protocol: plan.TCP, Ports: []uint16{443}, Prefixes: lists[i%2]}}
		i++
		t0 := time.Now()
		st, err := s.Current(ctx)
		read += time.Since(t0)
		if err != nil {
			b.Fatal(err)
		}
		pl := sinktest.Plan(b, sink.Step{Sink: s}, d, st)
		if len(pl.Add) != 10_000 {
			b.Fatalf("plan adds %d, want 10000", len(pl.Add))
		}
		t0 = time.Now()
		if err := s.Apply(ctx, pl); err != nil {
			b.Fatal(err)
		}
		apply += time.Since(t0)
	}
	// One op is a whole sync; these split it into reading and applying.
	b.ReportMetric(float64(read.Milliseconds())/float64(i), "read-ms/op")
	b.ReportMetric(float64(apply.Milliseconds())/float64(i), "apply-ms/op")
}

// BenchmarkApply10kRules: one iptables rule per prefix.
func BenchmarkApply10kRules(b *testing.B) { benchApply(b, -1) }

// BenchmarkApply10kIPSet: one rule matching an ipset of 10,000 members.
func BenchmarkApply10kIPSet(b *testing.B) { benchApply(b, 200) }
