package template

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink/sinktest"
)

func TestApplyCreatesMissingDirectory(t *testing.T) {
	s := newSink(t, Options{Path: filepath.Join(t.TempDir(), "nginx", "pagerduty.conf")})
	apply(t, s, entries())
	if _, err := os.Stat(s.opts.Path); err != nil {
		t.Fatal(err)
	}
}

func TestApplyErrorNamesTheFinalPath(t *testing.T) {
	s := newSink(t, Options{Path: filepath.Join(sinktest.ReadOnlyDir(t), "pagerduty.conf")})
	err := s.Apply(context.Background(), plan.SinkPlan{Sink: s.Name(), Add: entries()})
	if err == nil || !strings.Contains(err.Error(), s.opts.Path) || strings.Contains(err.Error(), ".pagerduty.conf") {
		t.Fatalf("Apply = %v, want an error naming %s and no temp file", err, s.opts.Path)
	}
}
