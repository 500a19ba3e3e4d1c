package sinktest

import (
	"context"
	"slices"
	"testing"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/heappeak"
)

// OneAddedHoldsNoCopy is the everyday change at scale for a sink that
// writes its whole result out: s holds keep (applied here), and a plan
// that keeps it and adds one entry is applied while the heap is watched.
// The apply may hold no copy of the entries kept (8 bytes an entry at
// most; a merged copy is 56), and the sink must read back keep and the
// one added, with no drift.
func OneAddedHoldsNoCopy(t *testing.T, s sink.Sink, keep []plan.Entry, added plan.Entry) {
	t.Helper()
	ctx := context.Background()
	if err := s.Apply(ctx, plan.SinkPlan{Sink: s.Name(), Add: keep}); err != nil {
		t.Fatal(err)
	}
	p := plan.SinkPlan{Sink: s.Name(), Keep: keep, Add: []plan.Entry{added}}
	applied := heappeak.Of(func() {
		if err := s.Apply(ctx, p); err != nil {
			t.Fatal(err)
		}
	})
	n := uint64(len(keep))
	t.Logf("peak heap of the apply: %d KB for %d entries kept", applied>>10, n)
	if applied > 8*n {
		t.Errorf("apply's heap peaked at %d KB for %d entries kept and one added; want at most %d KB", applied>>10, n, 8*n>>10)
	}
	st, err := s.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Owned) != len(keep)+1 || !slices.Contains(st.Owned, added) || len(st.Drift) != 0 {
		t.Fatalf("read back %d entries, drift %q; want %d with the one added and no drift", len(st.Owned), st.Drift, len(keep)+1)
	}
}
