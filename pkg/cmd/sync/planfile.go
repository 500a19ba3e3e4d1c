package sync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"path/filepath"
	"time"

	"github.com/google/renameio/v2"

	"github.com/pdsafelist/pdsafelist/pkg/config"
	"github.com/pdsafelist/pdsafelist/pkg/controller"
	"github.com/pdsafelist/pdsafelist/pkg/regularfile"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
)

// savePlan writes the plan of r for a later --plan.
func savePlan(path string, now time.Time, policy string, targets []controller.Target, r *controller.Run) error {
	doc, err := controller.NewSavedPlan(now, policy, targets, r)
	if err != nil {
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

func loadPlan(path string, s config.Settings) (*controller.SavedPlan, error) {
	data, err := regularfile.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("plan %s: %w", path, errors.Unwrap(err))
	}
	doc, err := controller.ParsePlan(data, s.Limits)
	if err != nil {
		return nil, fmt.Errorf("plan %s: %w", path, err)
	}
	return doc, nil
}

// applySaved opens the sinks the plan names and applies it through the
// same cycle as a live run.
func applySaved(ctx context.Context, opts *Options, s config.Settings) error {
	f := opts.Factory
	start := f.Now()
	doc, err := loadPlan(opts.PlanFile, s)
	if err != nil {
		// A refused file is a guard refusal: metrics and the log say so.
		if g, ok := plan.RefusedBy(err); ok {
			opts.finish(s, &controller.Run{Start: start, End: f.Now(), Refused: []plan.Guard{g}, Saved: true, Err: err})
		}
		return err
	}
	var specs []sink.Spec
	for i, ss := range doc.Sinks {
		spec, err := ss.Spec(fmt.Sprintf("plan %s sinks[%d] (%s)", filepath.Base(opts.PlanFile), i, ss.Origin))
		if err != nil {
			return err
		}
		specs = append(specs, spec)
	}
	// No selection check: the plan holds its entries, and the controller
	// checks each against the sets the config defines.
	targets, err := open(ctx, f, s, specs, nil)
	if err != nil {
		return err
	}
	unlock, err := lock(ctx, opts.Factory.Logger(), s.StateDir, opts.WaitLock)
	if err != nil {
		return err
	}
	defer unlock()
	r, err := opts.controller(s, targets).ApplySaved(ctx, doc)
	if r == nil {
		return err
	}
	if err := print(opts, r.Report); err != nil {
		return err
	}
	return r.Err
}
