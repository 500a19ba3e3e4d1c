package nftables

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/sink/sinktest"
)

// The README's /etc/nftables.d does not exist on Debian 12: the sink
// creates the directory it writes in.
func TestApplyCreatesMissingDirectory(t *testing.T) {
	s := newSink(t, Options{Path: filepath.Join(t.TempDir(), "nftables.d", "pagerduty.nft")})
	sync(t, s, desired())
	if _, err := os.Stat(s.opts.Path); err != nil {
		t.Fatal(err)
	}
}

func TestApplyErrorNamesTheFinalPath(t *testing.T) {
	s := newSink(t, Options{Path: filepath.Join(sinktest.ReadOnlyDir(t), "pagerduty.nft")})
	err := s.Apply(context.Background(), sinktest.Plan(t, sink.Step{Sink: s}, desired(), plan.State{}))
	if err == nil || !strings.Contains(err.Error(), s.opts.Path) || strings.Contains(err.Error(), ".pagerduty.nft") {
		t.Fatalf("Apply = %v, want an error naming %s and no temp file", err, s.opts.Path)
	}
}
