package sinktest

import (
	"context"
	"testing"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
)

// Plan is step's plan for desired against st, made as a run makes it
// (sink.Step.Plan: route, shape, calculate), for sink tests that need a
// plan to apply or render. A Shaper's refusal fails t; a test that expects
// one calls step.Plan itself.
func Plan(t testing.TB, step sink.Step, desired []plan.DesiredSet, st plan.State) plan.SinkPlan {
	t.Helper()
	p, err := step.Plan(desired, st)
	if err != nil {
		t.Fatalf("plan for %s: %v", step.Sink.Name(), err)
	}
	return p
}

// Sync is one sync of step's sink as a run makes it: read what it holds,
// plan, check, and apply when there is something to change. The error is
// the first of Current, Shape's refusal, Check and Apply.
func Sync(ctx context.Context, step sink.Step, desired []plan.DesiredSet) (plan.SinkPlan, error) {
	st, err := step.Sink.Current(ctx)
	if err != nil {
		return plan.SinkPlan{}, err
	}
	p, err := step.Plan(desired, st)
	if err != nil {
		return p, err
	}
	if err := step.Check(p); err != nil {
		return p, err
	}
	if p.HasChanges() {
		return p, step.Sink.Apply(ctx, p)
	}
	return p, nil
}

// MustSync is Sync that fails t on any error.
func MustSync(t testing.TB, step sink.Step, desired []plan.DesiredSet) plan.SinkPlan {
	t.Helper()
	p, err := Sync(context.Background(), step, desired)
	if err != nil {
		t.Fatalf("sync %s: %v", step.Sink.Name(), err)
	}
	return p
}
