package resolution

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pdsafelist/pdsafelist/pkg/config"
	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/source"
	"github.com/pdsafelist/pdsafelist/pkg/testutil"
)

// stuckSource waits on something that does not look at the context, as an
// open of a named pipe or a read from a hung mount does.
type stuckSource struct{ release chan struct{} }

func (stuckSource) Kind() source.Kind { return "fake" }
func (stuckSource) Name() string      { return "stuck" }
func (s stuckSource) Resolve(context.Context) source.Result {
	<-s.release
	return source.Result{Kind: "fake", Name: "stuck", Addresses: []source.Address{{Prefix: netip.MustParsePrefix("193.0.2.9/32")}}}
}

// The run's deadline ends resolution whatever a source waits on: a source
// that does not stop is left behind and fails, freezing its set, and the
// other sets are resolved.
func TestDeadlineLeavesAStuckSourceBehind(t *testing.T) {
	stuck := stuckSource{release: make(chan struct{})}
	t.Cleanup(func() { close(stuck.release) })
	other := config.SetSpec{Name: "other", Direction: "egress", Protocol: "tcp", Ports: []uint16{443}}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	var res []SetResult
	testutil.Within(t, 10*time.Second, "resolve", func() {
		res = Run(ctx, []config.SetSpec{spec, other}, func(s config.SetSpec) []source.Source {
			if s.Name == "other" {
				return []source.Source{fakeSource{name: "ok", addrs: []string{"193.0.2.1/32"}}}
			}
			return []source.Source{fakeSource{name: "ok", addrs: []string{"193.0.2.1/32"}}, stuck}
		}, plan.DefaultLimits)
	})
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Errorf("resolution took %s past a 100ms deadline", d)
	}
	if !res[0].Desired.Frozen || !strings.Contains(res[0].Desired.Reason, "fake stuck: did not stop within") {
		t.Errorf("set with the stuck source: frozen %v, reason %q", res[0].Desired.Frozen, res[0].Desired.Reason)
	}
	if res[1].Err != nil || len(res[1].Desired.Prefixes) != 1 {
		t.Errorf("other set: %v %v", res[1].Err, res[1].Desired.Prefixes)
	}
}
