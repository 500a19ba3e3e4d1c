package synccmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/google/renameio/v2"

	"github.com/pdsafelist/pdsafelist/pkg/cmdutil"
	"github.com/pdsafelist/pdsafelist/pkg/config"
	"github.com/pdsafelist/pdsafelist/pkg/controller"
	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/regularfile"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/state"
)

// PlanKeyEnv holds a saved plan's key for a plan made in one CI job and
// applied in another; --plan-key-file takes precedence.
const PlanKeyEnv = "PDSAFELIST_PLAN_KEY"

// planKey is the key that signs and verifies saved plans: --plan-key-file,
// else $PDSAFELIST_PLAN_KEY, else plan.key in the state directory, made on
// first use when create is set.
func (opts *Options) planKey(s config.Settings, create bool) ([]byte, error) {
	if opts.PlanKeyFile != "" {
		return state.ReadPlanKey(opts.PlanKeyFile)
	}
	if v := opts.Factory.Env(PlanKeyEnv); v != "" {
		return state.CheckPlanKey("$"+PlanKeyEnv, []byte(v))
	}
	return state.PlanKey(s.StateDir, create)
}

// savePlan writes the plan of r for a later --plan.
// A path of - is standard output.
func savePlan(stdout io.Writer, path string, key []byte, now time.Time, policy string, targets []controller.Target, r *controller.Run) error {
	doc, err := controller.NewSavedPlan(now, policy, targets, r)
	if err != nil {
		return fmt.Errorf("plan not saved to %s: %w", path, err)
	}
	if err := controller.Sign(doc, key); err != nil {
		return fmt.Errorf("plan %s: %w", path, err)
	}
	data, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return fmt.Errorf("plan %s: %w", path, err)
	}
	if path == cmdutil.Stdio {
		if _, err := stdout.Write(append(data, '\n')); err != nil {
			return fmt.Errorf("plan to standard output: %w", err)
		}
		return nil
	}
	if err := renameio.WriteFile(path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("plan %s: %w", path, err)
	}
	return nil
}

// applySaved applies a saved plan through the same cycle as a live run.
// The sinks are opened from this run's config and flags, exactly as a
// live run opens them, and only once the plan is proven authentic and
// made for exactly those sinks: nothing in the file picks a command, a
// path or an option.
func applySaved(ctx context.Context, opts *Options, s config.Settings) error {
	f := opts.Factory
	start := f.Now()
	doc, specs, err := opts.checkSaved(s)
	if err != nil {
		// A refused file is a guard refusal: metrics and the log say so.
		if g, ok := plan.RefusedBy(err); ok {
			opts.summary(s).Finish(&controller.Run{Start: start, End: f.Now(), Refused: []plan.Guard{g}, Saved: true, Err: err})
		}
		return err
	}
	sets, err := s.SelectedSets()
	if err != nil {
		return err
	}
	targets, err := open(ctx, f, s, specs, sets)
	if err != nil {
		return err
	}
	unlock, err := state.Lock(ctx, opts.Factory.Logger(), s.StateDir, opts.WaitLock)
	if err != nil {
		return err
	}
	defer unlock()
	r, err := opts.controller(s, targets).ApplySaved(ctx, doc)
	if r == nil {
		return err
	}
	if err := printReport(opts, r.Report); err != nil {
		return err
	}
	return r.Err
}

// checkSaved loads the plan and the specs of this run's sinks, and proves
// the one was made with the key for the other.
func (opts *Options) checkSaved(s config.Settings) (*controller.SavedPlan, []sink.Spec, error) {
	var data []byte
	var err error
	if opts.PlanFile == cmdutil.Stdio {
		data, err = opts.Factory.ReadStdin("--plan -")
	} else if data, err = regularfile.ReadFile(opts.PlanFile); err != nil {
		err = fmt.Errorf("plan %s: %w", opts.PlanFile, errors.Unwrap(err))
	}
	if err != nil {
		return nil, nil, err
	}
	key, err := opts.planKey(s, false)
	if err != nil {
		var ke *state.PlanKeyError
		if errors.As(err, &ke) || errors.Is(err, os.ErrNotExist) {
			err = &plan.GuardError{Guard: plan.GuardSavedPlan, Sink: "plan", Msg: fmt.Sprintf("cannot verify %s: %s", opts.PlanFile, err)}
		}
		return nil, nil, err
	}
	doc, err := controller.ParsePlan(data, key, s.Limits)
	if err != nil {
		return nil, nil, fmt.Errorf("plan %s: %w", opts.PlanFile, err)
	}
	specs, err := opts.sinkSpecs(s)
	if err != nil {
		return nil, nil, err
	}
	if err := controller.MatchSinks(doc, specs); err != nil {
		return nil, nil, fmt.Errorf("plan %s: %w", opts.PlanFile, err)
	}
	return doc, specs, nil
}
