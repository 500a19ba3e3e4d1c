package sync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/google/renameio/v2"
	"go.yaml.in/yaml/v3"

	"github.com/pdsafelist/pdsafelist/pkg/config"
	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/render"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
)

// planFileVersion changes only with an incompatible layout.
const planFileVersion = 1

// savedPlan is what --plan-out writes and --plan applies: each sink's spec,
// the fingerprint of the state the plan was made against, and the plan.
type savedPlan struct {
	FormatVersion int         `json:"format_version"`
	CreatedAt     time.Time   `json:"created_at"`
	Policy        string      `json:"policy"`
	Sinks         []savedSink `json:"sinks"`
}

type savedSink struct {
	Type        string       `json:"type"`
	Sets        []string     `json:"sets,omitempty"`
	Origin      string       `json:"origin"`
	Options     string       `json:"options,omitempty"`
	Name        string       `json:"name"`
	Fingerprint string       `json:"state_fingerprint"`
	Add         []plan.Entry `json:"add"`
	Remove      []plan.Entry `json:"remove"`
	Keep        []plan.Entry `json:"keep"`
	Covered     []plan.Entry `json:"covered,omitempty"`
	Held        int          `json:"held,omitempty"`
	Drift       []string     `json:"drift,omitempty"`
}

// savePlan refuses to save a plan with errors: applying half a plan later
// would be a surprise.
func savePlan(path string, now time.Time, policy string, targets []target, r *run) error {
	doc := savedPlan{FormatVersion: planFileVersion, CreatedAt: now.UTC(), Policy: policy}
	var errs []error
	for i, t := range targets {
		rep := r.report.Sinks[i]
		if rep.Err != nil {
			errs = append(errs, rep.Err)
			continue
		}
		var opts string
		if t.spec.Options.Kind != 0 {
			data, err := yaml.Marshal(&t.spec.Options)
			if err != nil {
				return fmt.Errorf("plan %s: %w", path, err)
			}
			opts = string(data)
		}
		doc.Sinks = append(doc.Sinks, savedSink{
			Type: t.spec.Type, Sets: t.spec.Sets, Origin: t.spec.Origin, Options: opts, Name: t.sink.Name(),
			Fingerprint: r.states[i].Fingerprint(),
			Add:         nonNil(rep.Plan.Add), Remove: nonNil(rep.Plan.Remove), Keep: nonNil(rep.Plan.Keep),
			Covered: rep.Plan.Covered, Held: rep.Plan.Held, Drift: rep.Plan.Drift,
		})
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("plan not saved to %s: %w", path, err)
	}
	data, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return fmt.Errorf("plan %s: %w", path, err)
	}
	if err := renameio.WriteFile(path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("plan %s: %w", path, err)
	}
	return nil
}

func nonNil(es []plan.Entry) []plan.Entry {
	if es == nil {
		return []plan.Entry{}
	}
	return es
}

func loadPlan(path string) (*savedPlan, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("plan %s: %w", path, errors.Unwrap(err))
	}
	var doc savedPlan
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("plan %s: not a pdsafelist plan: %s", path, config.OneLine(err))
	}
	if doc.FormatVersion != planFileVersion {
		return nil, fmt.Errorf("plan %s: format_version %d, want %d", path, doc.FormatVersion, planFileVersion)
	}
	return &doc, nil
}

// applySaved applies exactly a saved plan. Like Terraform, it refuses the
// whole plan when any sink changed since the plan was made.
func applySaved(ctx context.Context, opts *Options, s config.Settings) error {
	f := opts.Factory
	doc, err := loadPlan(opts.PlanFile)
	if err != nil {
		return err
	}
	var specs []sink.Spec
	for i, ss := range doc.Sinks {
		spec := sink.Spec{Type: ss.Type, Sets: ss.Sets, Origin: fmt.Sprintf("plan %s sinks[%d] (%s)", filepath.Base(opts.PlanFile), i, ss.Origin)}
		if ss.Options != "" {
			var n yaml.Node
			if err := yaml.Unmarshal([]byte(ss.Options), &n); err != nil || len(n.Content) != 1 {
				return fmt.Errorf("%s: bad options", spec.Origin)
			}
			spec.Options = *n.Content[0]
		}
		specs = append(specs, spec)
	}
	// No set routing check: the plan already holds its entries.
	targets, err := open(f, s, specs, nil)
	if err != nil {
		return err
	}
	unlock, err := lock(ctx, s.StateDir, opts.WaitLock)
	if err != nil {
		return err
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(ctx, opts.RunTimeout)
	defer cancel()
	report := render.SyncReport{}
	var stale []error
	for i, t := range targets {
		ss := doc.Sinks[i]
		if t.sink.Name() != ss.Name {
			return fmt.Errorf("%s: opens %s, plan was made for %s", t.spec.Origin, t.sink.Name(), ss.Name)
		}
		st, err := t.sink.Current(ctx)
		if err != nil {
			return fmt.Errorf("read %s: %w", ss.Name, err)
		}
		if st.Fingerprint() != ss.Fingerprint {
			stale = append(stale, &plan.GuardError{Guard: "stale-plan", Sink: ss.Name,
				Msg: fmt.Sprintf("the sink changed since the plan was made at %s; run sync --plan-out again", doc.CreatedAt.Format(time.RFC3339))})
		}
		p := plan.SinkPlan{Sink: ss.Name, Add: ss.Add, Remove: ss.Remove, Keep: ss.Keep, Covered: ss.Covered, Held: ss.Held, Drift: ss.Drift}
		// A hand-edited plan file must not get past a sink's own limits.
		if c, ok := t.sink.(sink.Checker); ok {
			if err := c.Check(p); err != nil {
				stale = append(stale, err)
			}
		}
		report.Sinks = append(report.Sinks, render.SinkReport{Plan: p})
	}
	if err := errors.Join(stale...); err != nil {
		var refused []string
		for _, e := range stale {
			if name, ok := refusal(e); ok {
				refused = append(refused, name)
			}
		}
		r := &run{start: f.Now(), refused: refused, err: err}
		opts.finish(s, r)
		return err
	}
	Apply(ctx, targets, report.Sinks, opts.Parallelism)
	markDeadline(ctx, opts.RunTimeout, report.Sinks)
	if err := print(opts, report); err != nil {
		return err
	}
	r := &run{start: f.Now(), report: report, err: outcome(report, nil, opts.DetailedExitcode)}
	opts.finish(s, r)
	return r.err
}
