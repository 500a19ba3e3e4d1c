package nftables

import (
	"context"
	"strings"
	"testing"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/selfmark"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/sink/sinktest"
	"github.com/pdsafelist/pdsafelist/pkg/testutil"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/golden"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/netns"
)

// The egress chain accepts the self mark before its drop; ingress and a
// chain with no drop carry no such rule.
func TestRenderSelfMarkGolden(t *testing.T) {
	for _, enforce := range []string{"egress", "ingress"} {
		t.Run(enforce, func(t *testing.T) {
			s := newSink(t, Options{Enforce: enforce})
			s.mark = selfmark.Default
			got := s.render(sinktest.Plan(t, sink.Step{Sink: s}, desired(), plan.State{}).Result())
			golden.Assert(t, "render-"+enforce+"-selfmark.nft", got)
			if has := strings.Contains(string(got), "pdsafelist:self"); has != (enforce == "egress") {
				t.Errorf("enforce=%s: self rule present = %v", enforce, has)
			}
		})
	}
}

// Opening a sink that enforces egress turns marking on; one that does
// not leaves it off.
func TestOpenEnablesSelfMark(t *testing.T) {
	for enforce, want := range map[string]bool{"egress": true, "both": true, "ingress": false, "none": false} {
		k := selfmark.New(selfmark.Default)
		reg := sink.Registry{"nftables": Factory}
		spec, err := reg.ParseFlag("nftables:" + t.TempDir() + "/x.nft?enforce=" + enforce)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := reg.Open(spec, sink.Env{SelfMark: k}); err != nil {
			t.Fatal(err)
		}
		if k.Active() != want {
			t.Errorf("enforce=%s: marking on = %v, want %v", enforce, k.Active(), want)
		}
	}
}

// nft lists each form of mask its own way; render writes that form, so a
// clean load is no drift.
func TestSelfMarkListsBackIdentically(t *testing.T) {
	testutil.Integration(t, true, "ip", "nft")
	for _, m := range []selfmark.Mark{selfmark.Default, {Value: 0x70640000, Mask: 0xffff0000}, {Value: 0x64, Mask: 0xffffffff}, {Value: 0x1004, Mask: 0xf00f}} {
		t.Run(m.String(), func(t *testing.T) {
			p := netns.New(t)
			s := newSink(t, Options{Enforce: "both", Apply: true, Check: "always", Netns: p.Client})
			s.mark = m
			sync(t, s, desired())
			st, err := s.Current(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(st.Drift) != 0 {
				t.Fatalf("drift right after a load: %q", st.Drift)
			}
			out, err := p.Exec(p.Client, "nft", "list", "chain", "inet", "pdsafelist", "egress")
			if err != nil || !strings.Contains(string(out), "pdsafelist:self") {
				t.Fatalf("self rule not loaded: %v\n%s", err, out)
			}
			// Deleting it by hand is drift.
			if out, err := p.Exec(p.Client, "sh", "-c", "nft -a list chain inet pdsafelist egress | sed -n 's/.*pdsafelist:self.*# handle \\([0-9]*\\)/\\1/p' | xargs -I{} nft delete rule inet pdsafelist egress handle {}"); err != nil {
				t.Fatalf("delete self rule: %v %s", err, out)
			}
			if st, _ := s.Current(context.Background()); len(st.Drift) == 0 {
				t.Error("a deleted self rule is not drift")
			}
		})
	}
}
