package metrics

import (
	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

// parse reads the file back with Prometheus' own parser and flattens it to
// "name{labels}" -> value.
func parse(t *testing.T, path string) map[string]float64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(f)
	if err != nil {
		t.Fatalf("not a valid textfile: %v", err)
	}
	out := map[string]float64{}
	for name, mf := range mfs {
		if mf.GetHelp() == "" {
			t.Errorf("%s has no HELP", name)
		}
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			key := name
			if len(labels) > 0 {
				key += "{" + strings.Join(labels, ",") + "}"
			}
			out[key] = m.GetGauge().GetValue()
		}
	}
	return out
}

func TestWriteTextfile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pdsafelist.prom")
	run := Run{
		Start: t0, End: t0.Add(1500 * time.Millisecond), Success: true,
		Sets:          []SetMetric{{Name: "events", Addresses: 3}, {Name: "webhooks", Frozen: true, StaleSince: t0.Add(-time.Hour)}},
		Sources:       []SourceMetric{{Set: "events", Kind: "dns", Name: "events.pagerduty.com"}, {Set: "webhooks", Kind: "http", Name: "https://x/y", Failed: true}},
		Sinks:         []SinkMetric{{Sink: "nftables:/etc/p.nft", Added: 2, Removed: 1, Applied: true}},
		GuardRefusals: []plan.Guard{plan.GuardMaxDelete},
	}
	if err := WriteTextfile(path, run); err != nil {
		t.Fatal(err)
	}
	end := float64(t0.Add(1500*time.Millisecond).Unix()) + 0.5
	want := map[string]float64{
		"pdsafelist_last_run_timestamp_seconds":                                     end,
		"pdsafelist_last_success_timestamp_seconds":                                 end,
		"pdsafelist_run_duration_seconds":                                           1.5,
		"pdsafelist_run_success":                                                    1,
		"pdsafelist_set_addresses{set=events}":                                      3,
		"pdsafelist_set_addresses{set=webhooks}":                                    0,
		"pdsafelist_set_frozen{set=events}":                                         0,
		"pdsafelist_set_frozen{set=webhooks}":                                       1,
		"pdsafelist_set_stale_since_timestamp_seconds{set=webhooks}":                float64(t0.Add(-time.Hour).Unix()),
		"pdsafelist_source_failed{kind=dns,set=events,source=events.pagerduty.com}": 0,
		"pdsafelist_source_failed{kind=http,set=webhooks,source=https://x/y}":       1,
		"pdsafelist_sink_added{sink=nftables:/etc/p.nft}":                           2,
		"pdsafelist_sink_removed{sink=nftables:/etc/p.nft}":                         1,
		"pdsafelist_sink_failed{sink=nftables:/etc/p.nft}":                          0,
		"pdsafelist_guard_refusals{guard=ec2_max_entries}":                          0,
		"pdsafelist_guard_refusals{guard=wafv2_max_addresses}":                      0,
		"pdsafelist_guard_refusals{guard=wafv2_set_map}":                            0,
		"pdsafelist_guard_refusals{guard=k8s_object_size}":                          0,
		"pdsafelist_guard_refusals{guard=ec2_overlap}":                              0,
		"pdsafelist_guard_refusals{guard=ec2_rule_limit}":                           0,
		"pdsafelist_guard_refusals{guard=ingress_annotation}":                       0,
		"pdsafelist_guard_refusals{guard=max_delete}":                               1,
		"pdsafelist_guard_refusals{guard=saved_plan}":                               0,
		"pdsafelist_guard_refusals{guard=min_entries}":                              0,
		"pdsafelist_guard_refusals{guard=stale_plan}":                               0,
		"pdsafelist_guard_refusals{guard=unsafe_prefix}":                            0,
	}
	if diff := cmp.Diff(want, parse(t, path)); diff != "" {
		t.Errorf("metrics (-want +got):\n%s", diff)
	}
	if info, _ := os.Stat(path); info.Mode().Perm() != 0o644 {
		t.Errorf("mode %v: node_exporter must be able to read it", info.Mode())
	}
}

// A failed run keeps the last success time of the run before.
func TestLastSuccessCarriedOver(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pdsafelist.prom")
	if err := WriteTextfile(path, Run{Start: t0, End: t0, Success: true}); err != nil {
		t.Fatal(err)
	}
	later := t0.Add(time.Hour)
	if err := WriteTextfile(path, Run{Start: later, End: later, Success: false}); err != nil {
		t.Fatal(err)
	}
	got := parse(t, path)
	if got["pdsafelist_last_success_timestamp_seconds"] != float64(t0.Unix()) || got["pdsafelist_last_run_timestamp_seconds"] != float64(later.Unix()) || got["pdsafelist_run_success"] != 0 {
		t.Errorf("got %v", got)
	}
	if err := WriteTextfile(path, Run{Start: later, End: later, Success: true}); err != nil {
		t.Fatal(err)
	}
	if got := parse(t, path); got["pdsafelist_last_success_timestamp_seconds"] != float64(later.Unix()) {
		t.Errorf("success not updated: %v", got)
	}
}

func TestCorruptPreviousFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pdsafelist.prom")
	if err := os.WriteFile(path, []byte("garbage {{{\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteTextfile(path, Run{Start: t0, End: t0}); err != nil {
		t.Fatal(err)
	}
	got := parse(t, path)
	if _, ok := got["pdsafelist_last_success_timestamp_seconds"]; ok {
		t.Error("invented a last success")
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
}

func TestUnwritableDirectory(t *testing.T) {
	err := WriteTextfile(filepath.Join(t.TempDir(), "missing", "x.prom"), Run{End: t0})
	if err == nil || !strings.Contains(err.Error(), "missing/x.prom") || strings.Contains(err.Error(), "\n") {
		t.Errorf("err = %v", err)
	}
}
