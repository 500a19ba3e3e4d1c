package controller

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/pdsafelist/pdsafelist/pkg/metrics"
	"github.com/pdsafelist/pdsafelist/pkg/notify"
	"github.com/pdsafelist/pdsafelist/pkg/oneline"
	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/state"
)

// Alerts raises and resolves PagerDuty alerts about each run (a source
// failed, a guard refused, a sink failed) and sends a change event when
// something was applied. The state keeps which alerts are open. A failed
// notification is logged, never a reason to fail the sync.
type Alerts struct {
	// Notifier's Source names this host in every summary.
	Notifier *notify.Notifier
	// Timeout bounds one run's notifications together (notify.timeout).
	Timeout time.Duration
	Now     func() time.Time
	Log     *slog.Logger
}

func (a *Alerts) log() *slog.Logger {
	if a.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return a.Log
}

// Observe notifies about r and records the open alerts in st.
func (a *Alerts) Observe(ctx context.Context, st *state.File, r *Run) {
	spent := fmt.Errorf("notify.timeout %s spent", a.Timeout)
	ctx, cancel := context.WithTimeoutCause(ctx, a.Timeout, spent)
	defer cancel()
	warn := func(err error) {
		if context.Cause(ctx) == spent {
			err = fmt.Errorf("%w (%w)", err, spent)
		}
		a.log().Warn("notification failed", "err", err.Error())
	}
	var active []notify.Event
	var failed []string
	for _, set := range r.Report.Sets {
		for _, src := range set.Sources {
			if src.Err != nil {
				// Why, on the same line: the alert is often all the
				// responder reads before acting.
				failed = append(failed, fmt.Sprintf("%s: %s %s: %s", set.Spec.Name, src.Kind, src.Name, oneline.Error(src.Err)))
			}
		}
	}
	if len(failed) > 0 {
		active = append(active, notify.Event{Kind: notify.SourceFailed, Severity: "error",
			Summary: fmt.Sprintf("pdsafelist on %s: %d source(s) failed, their sets are frozen: %s", a.Notifier.Source, len(failed), strings.Join(failed, "; ")),
			Details: map[string]any{"failed_sources": failed}})
	}
	if len(r.Refused) > 0 {
		var msgs []string
		for _, sk := range r.Report.Sinks {
			if sk.Err != nil {
				msgs = append(msgs, sk.Err.Error())
			}
		}
		// A set frozen by a guard (min-entries, an unsafe answer) names
		// itself in its error.
		for _, set := range r.Report.Sets {
			if _, ok := plan.RefusedBy(set.Err); ok {
				msgs = append(msgs, set.Err.Error())
			}
		}
		active = append(active, notify.Event{Kind: notify.GuardRefused, Severity: "critical",
			Summary: fmt.Sprintf("pdsafelist on %s: a safety guard refused the plan (%s): %s", a.Notifier.Source, guardList(r.Refused, ", "), strings.Join(msgs, "; ")),
			Details: map[string]any{"guards": r.Refused, "errors": msgs}})
	}
	var failedSinks []string
	for _, sk := range r.Report.Sinks {
		if sk.Err != nil {
			failedSinks = append(failedSinks, sk.Err.Error())
		}
	}
	if len(failedSinks) > 0 && len(r.Refused) == 0 {
		active = append(active, notify.Event{Kind: notify.SinkFailed, Severity: "error",
			Summary: fmt.Sprintf("pdsafelist on %s: %d sink(s) failed: %s", a.Notifier.Source, len(failedSinks), strings.Join(failedSinks, "; ")),
			Details: map[string]any{"errors": failedSinks}})
	}
	var added, removed int
	var applied []string
	for _, sk := range r.Report.Sinks {
		if sk.Applied {
			added += len(sk.Plan.Add)
			removed += len(sk.Plan.Remove)
			applied = append(applied, sk.Plan.Sink)
		}
	}
	if len(applied) > 0 {
		err := a.Notifier.ChangeEvent(ctx, notify.Change{Time: a.Now(),
			Summary: fmt.Sprintf("pdsafelist on %s applied %d additions and %d removals to %s", a.Notifier.Source, added, removed, strings.Join(applied, ", ")),
			Details: map[string]any{"sinks": applied, "added": added, "removed": removed}})
		if err != nil {
			warn(err)
		}
	}
	var open []notify.Kind
	var untouched []string
	for _, k := range st.OpenAlerts {
		// A saved plan resolves no source, so it cannot say one recovered.
		if r.Saved && notify.Kind(k) == notify.SourceFailed {
			untouched = append(untouched, k)
			continue
		}
		open = append(open, notify.Kind(k))
	}
	nowOpen, err := a.Notifier.Sync(ctx, open, active)
	if err != nil {
		warn(err)
	}
	st.OpenAlerts = untouched
	for _, k := range nowOpen {
		st.OpenAlerts = append(st.OpenAlerts, string(k))
	}
}

// Summary ends every run, dry runs and refused saved plans included: it
// writes the metrics file (not for a dry run) and the one summary log line.
type Summary struct {
	// MetricsFile is the Prometheus textfile; empty writes none.
	MetricsFile string
	// ExitCode is the command's exit-code table, for the log line and the
	// success metric.
	ExitCode func(error) int
	Log      *slog.Logger
}

func (s *Summary) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

// Finish records the finished run r.
func (s *Summary) Finish(r *Run) {
	end := r.End
	code := s.ExitCode(r.Err)
	// Changes present is an outcome, not a failure.
	_, changes := r.Err.(ChangesError)
	success := r.Err == nil || changes
	var add, remove, failedSinks, failedSources int
	m := metrics.Run{Start: r.Start, End: end, Success: success, GuardRefusals: r.Refused}
	for _, set := range r.Report.Sets {
		// A frozen set plans nothing, but its sinks keep what it last
		// vouched for: report that, not zero.
		addrs := len(set.Desired.Prefixes)
		if set.Desired.Frozen {
			addrs = len(set.Desired.LastKnown)
		}
		m.Sets = append(m.Sets, metrics.SetMetric{Name: set.Spec.Name, Addresses: addrs, Frozen: set.Desired.Frozen, StaleSince: set.StaleSince})
		for _, src := range set.Sources {
			m.Sources = append(m.Sources, metrics.SourceMetric{Set: set.Spec.Name, Kind: string(src.Kind), Name: src.Name, Failed: src.Err != nil})
			if src.Err != nil {
				failedSources++
			}
		}
	}
	for _, sk := range r.Report.Sinks {
		sm := metrics.SinkMetric{Sink: sk.Plan.Sink, Failed: sk.Err != nil, Applied: sk.Applied}
		if sk.Applied {
			sm.Added, sm.Removed = len(sk.Plan.Add), len(sk.Plan.Remove)
		}
		m.Sinks = append(m.Sinks, sm)
		add += len(sk.Plan.Add)
		remove += len(sk.Plan.Remove)
		if sk.Err != nil {
			failedSinks++
		}
	}
	log := s.log()
	// A dry run changes nothing, so it must not report a success either:
	// a one-shot dry run would silence the staleness alert while changes
	// wait.
	if s.MetricsFile != "" && !r.Report.DryRun {
		if err := metrics.WriteTextfile(s.MetricsFile, m); err != nil {
			log.Warn(err.Error())
		}
	}
	log.Info("sync finished",
		"dry_run", r.Report.DryRun, "exit_code", code, "duration_ms", end.Sub(r.Start).Milliseconds(),
		"sets", len(r.Report.Sets), "sinks", len(r.Report.Sinks), "add", add, "remove", remove,
		"failed_sources", failedSources, "failed_sinks", failedSinks, "guard_refusals", guardList(r.Refused, ","))
}

func guardList(gs []plan.Guard, sep string) string {
	names := make([]string, len(gs))
	for i, g := range gs {
		names[i] = string(g)
	}
	return strings.Join(names, sep)
}
