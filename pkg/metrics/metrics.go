// Package metrics writes a Prometheus textfile for node_exporter's textfile
// collector after each run, so cron runs are observable without a server.
package metrics

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/google/renameio/v2"
	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/regularfile"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// SetMetric describes one set after a run.
type SetMetric struct {
	Name       string
	Addresses  int
	Frozen     bool
	StaleSince time.Time
}

// SourceMetric describes one source after a run.
type SourceMetric struct {
	Set, Kind, Name string
	Failed          bool
}

// SinkMetric describes one sink after a run.
type SinkMetric struct {
	Sink            string
	Added, Removed  int
	Applied, Failed bool
}

// Run is everything a run reports.
type Run struct {
	Start, End time.Time
	Success    bool
	Sets       []SetMetric
	Sources    []SourceMetric
	Sinks      []SinkMetric
	// GuardRefusals names the guards that refused this run.
	GuardRefusals []plan.Guard
}

const lastSuccess = "pdsafelist_last_success_timestamp_seconds"

// WriteTextfile renders r and atomically replaces path. A failed run keeps
// the previous file's last-success time.
func WriteTextfile(path string, r Run) error {
	reg := prometheus.NewPedanticRegistry()
	gauge := func(name, help string, v float64) {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
		g.Set(v)
		reg.MustRegister(g)
	}
	vec := func(name, help string, labels ...string) *prometheus.GaugeVec {
		g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
		reg.MustRegister(g)
		return g
	}
	gauge("pdsafelist_last_run_timestamp_seconds", "Unix time the last run ended.", seconds(r.End))
	success := seconds(r.End)
	if !r.Success {
		success = previous(path)
	}
	if success > 0 {
		gauge(lastSuccess, "Unix time the last successful run ended.", success)
	}
	gauge("pdsafelist_run_duration_seconds", "Duration of the last run.", r.End.Sub(r.Start).Seconds())
	gauge("pdsafelist_run_success", "1 if the last run succeeded.", b(r.Success))

	addrs := vec("pdsafelist_set_addresses", "Prefixes desired for the set.", "set")
	frozen := vec("pdsafelist_set_frozen", "1 if the set's sources failed and sinks keep what they hold.", "set")
	stale := vec("pdsafelist_set_stale_since_timestamp_seconds", "Unix time a frozen set's sources started failing.", "set")
	for _, s := range r.Sets {
		addrs.WithLabelValues(s.Name).Set(float64(s.Addresses))
		frozen.WithLabelValues(s.Name).Set(b(s.Frozen))
		if !s.StaleSince.IsZero() {
			stale.WithLabelValues(s.Name).Set(seconds(s.StaleSince))
		}
	}
	failed := vec("pdsafelist_source_failed", "1 if the source failed in the last run.", "set", "kind", "source")
	for _, s := range r.Sources {
		failed.WithLabelValues(s.Set, s.Kind, s.Name).Set(b(s.Failed))
	}
	added := vec("pdsafelist_sink_added", "Entries added to the sink in the last run.", "sink")
	removed := vec("pdsafelist_sink_removed", "Entries removed from the sink in the last run.", "sink")
	sinkFailed := vec("pdsafelist_sink_failed", "1 if reading or applying the sink failed.", "sink")
	for _, s := range r.Sinks {
		added.WithLabelValues(s.Sink).Set(float64(s.Added))
		removed.WithLabelValues(s.Sink).Set(float64(s.Removed))
		sinkFailed.WithLabelValues(s.Sink).Set(b(s.Failed))
	}
	refusals := vec("pdsafelist_guard_refusals", "1 if the guard refused part of the last run's plan.", "guard")
	// Every guard is reported, at 0 when quiet, so alert rules can rely
	// on the series existing.
	for _, g := range plan.Guards {
		refusals.WithLabelValues(string(g)).Set(0)
	}
	for _, g := range r.GuardRefusals {
		refusals.WithLabelValues(string(g)).Set(1)
	}

	mfs, err := reg.Gather()
	if err != nil {
		return fmt.Errorf("metrics %s: %w", path, err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return fmt.Errorf("metrics %s: %w", path, err)
		}
	}
	if err := renameio.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return fmt.Errorf("metrics %s: %w", path, err)
	}
	return nil
}

// previous reads the last-success time from the file a run replaces; an
// unreadable file only means there is nothing to carry over.
func previous(path string) float64 {
	f, err := regularfile.Open(filepath.Clean(path))
	if err != nil {
		return 0
	}
	defer f.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(f)
	if err != nil {
		return 0
	}
	mf, ok := mfs[lastSuccess]
	if !ok || len(mf.GetMetric()) != 1 {
		return 0
	}
	return mf.GetMetric()[0].GetGauge().GetValue()
}

func seconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

func b(v bool) float64 {
	if v {
		return 1
	}
	return 0
}
