package template

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
)

// A path that is a symlink is written through, and a failed check puts
// back what was there, through the link too: the link is never replaced
// by a file nor removed (issue 20 item 7).
func TestSymlinkedPathIsWrittenThrough(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "repo", "pagerduty.conf")
	link := filepath.Join(dir, "pagerduty.conf")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	isLink := func(when string) {
		t.Helper()
		if to, err := os.Readlink(link); err != nil || to != target {
			t.Fatalf("%s: %s is no longer the symlink to %s: %q, %v", when, link, target, to, err)
		}
	}
	// Nothing was there: a failed check leaves nothing, and the link.
	failing := newSink(t, Options{Path: link, Format: "nginx", Check: sink.Command{"false"}})
	if err := failing.Apply(context.Background(), plan.SinkPlan{Sink: failing.Name(), Add: entries()[:1]}); err == nil {
		t.Fatal("a failed check was not reported")
	}
	isLink("after a failed check")
	if _, err := os.Stat(target); !os.IsNotExist(err) {
		t.Errorf("the target of a failed first write is left: %v", err)
	}
	s := newSink(t, Options{Path: link, Format: "plain", Check: sink.Command{"true"}})
	apply(t, s, entries())
	isLink("after a sync")
	written, err := os.ReadFile(target)
	if err != nil || !strings.Contains(string(written), entries()[0].Prefix.String()) {
		t.Fatalf("target holds %q, %v", written, err)
	}
	st, err := s.Current(context.Background())
	if err != nil || len(st.Owned) != len(entries()) || len(st.Drift) > 0 {
		t.Errorf("read back through the link: %d entries, drift %v, %v", len(st.Owned), st.Drift, err)
	}
	// Something was there: a failed check puts it back in the target.
	failing = newSink(t, Options{Path: link, Format: "plain", Check: sink.Command{"false"}})
	if err := failing.Apply(context.Background(), plan.SinkPlan{Sink: failing.Name(), Add: entries()[:1]}); err == nil {
		t.Fatal("a failed check was not reported")
	}
	isLink("after a failed check over a file")
	if again, _ := os.ReadFile(target); string(again) != string(written) {
		t.Errorf("the old content was not put back:\n%s", again)
	}
}
