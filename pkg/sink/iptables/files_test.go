package iptables

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

func TestFileApplyCreatesMissingDirectory(t *testing.T) {
	s := newFile(t, FileOptions{Path: filepath.Join(t.TempDir(), "iptables", "pdsafelist.v4")})
	cycle(t, s, desired())
	for _, p := range s.Files() {
		if _, err := os.Stat(p); err != nil {
			t.Error(err)
		}
	}
}

func TestFileApplyErrorNamesTheFinalPath(t *testing.T) {
	s := newFile(t, FileOptions{Path: filepath.Join(sinktest.ReadOnlyDir(t), "pdsafelist.v4")})
	err := s.Apply(context.Background(), sinktest.Plan(t, sink.Step{Sink: s}, desired(), plan.State{}))
	if err == nil || !strings.Contains(err.Error(), s.opts.Path) || strings.Contains(err.Error(), ".pdsafelist.v4") {
		t.Fatalf("Apply = %v, want an error naming %s and no temp file", err, s.opts.Path)
	}
}
