package iptables

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/netns"
)

// Members go to the kernel many to a message (a 32 KB batch holds about
// 1,100); a batch the kernel refuses part way is sent again member by
// member, so the error names the member, and what went in stays in.
func TestIPSetNetlinkBatches(t *testing.T) {
	integration(t)
	p := netns.New(t)
	sh(t, p, "ipset", "create", "batch", "hash:net", "family", "inet", "maxelem", "3000")
	k := ipsetNetlink{nsPath: p.Server}
	ctx := context.Background()
	read := func() []netip.Prefix {
		t.Helper()
		m, sets, err := k.read(ctx, []string{"batch"}, func(string) bool { return false }, true)
		if err != nil {
			t.Fatal(err)
		}
		if info := sets["batch"]; info.typ != "hash:net" || info.family != 4 || info.maxElem != 3000 || info.refs != 0 {
			t.Errorf("header read with the members: %+v", info)
		}
		var got []netip.Prefix
		for i := range m["batch"].len() {
			got = append(got, m["batch"].at(i))
		}
		return got
	}
	all := bigPrefixes(4000)
	if err := k.change(ctx, "batch", all[:2500], nil); err != nil {
		t.Fatal(err)
	}
	if got := read(); !slices.Equal(got, all[:2500]) {
		t.Fatalf("after adding 2500: %d members, want the 2500 added", len(got))
	}
	// Adding what is there and deleting what is gone are no errors.
	if err := k.change(ctx, "batch", all[:10], all[1000:2500]); err != nil {
		t.Fatal(err)
	}
	if err := k.change(ctx, "batch", nil, all[1000:1500]); err != nil {
		t.Fatal(err)
	}
	if got := read(); !slices.Equal(got, all[:1000]) {
		t.Fatalf("after deleting 1500: %d members, want the first 1000", len(got))
	}
	// 2,000 more make 3,000; the next one does not fit.
	err := k.change(ctx, "batch", all[1000:3001], nil)
	if err == nil || !strings.Contains(err.Error(), "ipset add batch "+all[3000].String()+":") {
		t.Fatalf("overfull add: got %v, want the error to name %s", err, all[3000])
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error is not one line: %q", err)
	}
	if got := read(); !slices.Equal(got, all[:3000]) {
		t.Fatalf("after the refused add: %d members, want 3000", len(got))
	}
}

// A set is staged at about four members a bucket: every run dumps it,
// and at one member a bucket the dump of 100,000 cost the kernel twice
// the CPU (docs/benchmarks-iptables.md).
func TestLiveIPSetHashSize(t *testing.T) {
	integration(t)
	p := netns.New(t)
	s := liveIn(t, p.Server, func(o *Options) { o.IPSetThreshold = 100 })
	ps := bigPrefixes(20_000)
	cycle(t, s, []plan.DesiredSet{{Name: "webhooks", Direction: plan.Ingress, Protocol: plan.TCP, Ports: []uint16{8443}, Prefixes: ps}})
	name := ipsetName(DefaultChainIn, plan.Entry{Set: "webhooks", Protocol: plan.TCP, Port: 8443}, 4)
	head := sh(t, p, "ipset", "list", "-t", name)
	if !strings.Contains(head, " hashsize 8192 ") {
		t.Errorf("20,000 members staged with another hash size, want 8192:\n%s", head)
	}
}
