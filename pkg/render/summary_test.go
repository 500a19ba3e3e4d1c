package render

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/pdsafelist/pdsafelist/pkg/controller"
	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/golden"
)

// The closing summary claims only what the run saw: a sink that failed is
// counted as failed, never as matching, and frozen sets were not planned.
func TestSummaryCountsFailures(t *testing.T) {
	inSync := controller.SinkReport{Plan: plan.SinkPlan{Sink: "nftables:a.nft", Keep: []plan.Entry{e("events", "193.0.2.10/32", plan.Egress)}}}
	foreign := controller.SinkReport{Plan: plan.SinkPlan{Sink: "nftables:/etc/nftables.conf"},
		Err: errors.New("read nftables:/etc/nftables.conf: not written by pdsafelist (no marker); refusing to overwrite it")}
	deadline := controller.SinkReport{Plan: plan.SinkPlan{Sink: "nftables:b.nft", Add: []plan.Entry{e("events", "193.0.2.10/32", plan.Egress)}},
		Err: errors.New("run deadline exceeded (--run-timeout 3s): apply nftables:b.nft: nft -c -f b.nft: stopped: context deadline exceeded")}
	frozenSink := controller.SinkReport{Plan: plan.SinkPlan{Sink: "nftables:a.nft", Keep: []plan.Entry{e("webhooks", "203.1.113.5/32", plan.Ingress)}}}
	tests := []struct {
		name string
		r    controller.Report
	}{
		{"sync-one-failed.txt", controller.Report{Sets: fixture()[:1], Sinks: []controller.SinkReport{inSync, foreign}}},
		{"sync-all-failed.txt", controller.Report{Sets: fixture()[:1], Sinks: []controller.SinkReport{foreign}}},
		{"sync-apply-failed.txt", controller.Report{Sets: fixture()[:1], Sinks: []controller.SinkReport{deadline, inSync}}},
		{"sync-dry-run-failed.txt", controller.Report{DryRun: true, Sets: fixture()[:1], Sinks: []controller.SinkReport{deadline, foreign}}},
		{"sync-all-frozen.txt", controller.Report{Sets: fixture()[1:], Sinks: []controller.SinkReport{frozenSink}}},
		{"sync-all-frozen-failed.txt", controller.Report{Sets: fixture()[1:], Sinks: []controller.SinkReport{frozenSink, foreign}}},
		// One set answered and matches, one is frozen: the run exits 1,
		// so "the sinks match" would be false comfort (issue 20 item 7).
		{"sync-some-frozen.txt", controller.Report{Sets: fixture(), Sinks: []controller.SinkReport{inSync}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := SyncText(&b, tt.r); err != nil {
				t.Fatal(err)
			}
			golden.Assert(t, tt.name, b.Bytes())
			if bytes.Contains(b.Bytes(), []byte("match the desired sets")) {
				t.Errorf("claims a match it did not see:\n%s", b.String())
			}
			if frozen := frozenSets(tt.r.Sets); frozen > 0 && !bytes.Contains(b.Bytes(), []byte("frozen")) {
				t.Errorf("%d frozen sets go unmentioned in the summary:\n%s", frozen, b.String())
			}
		})
	}
}

// The JSON summary counts what the exit code counts: failed sources and
// frozen sets have their own counts beside the failed sinks' "errors"
// (today only "errors": 0 showed, with sets frozen); "errors" keeps its
// meaning, as format_version 1 promises.
func TestJSONSummaryCountsFrozenSets(t *testing.T) {
	inSync := controller.SinkReport{Plan: plan.SinkPlan{Sink: "nftables:a.nft", Keep: []plan.Entry{e("events", "193.0.2.10/32", plan.Egress)}}}
	sets := fixture()
	second := sets[1]
	second.Spec.Name, second.Desired.Name = "webhooks2", "webhooks2"
	second.Sources = append(second.Sources, second.Sources[0])
	sets = append(sets, second)
	var b bytes.Buffer
	if err := SyncJSON(&b, controller.Report{Sets: sets, Sinks: []controller.SinkReport{inSync}}); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Summary map[string]int `json:"summary"`
	}
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"add": 0, "remove": 0, "drift": 0, "errors": 0, "failed_sources": 3, "frozen_sets": 2}
	if diff := cmp.Diff(want, doc.Summary); diff != "" {
		t.Errorf("summary (-want +got):\n%s", diff)
	}
}
