package sink

import "github.com/pdsafelist/pdsafelist/pkg/plan"

// Step is one sink's part of a run: the desired sets routed to it, shaped
// as it holds them, diffed against what it holds, then checked. The run
// cycle, saved-plan verification, the conformance suite and every sink
// test take this one path, so none of them tests a path production never
// takes.
type Step struct {
	Spec Spec
	Sink Sink
	// Policy decides what may be removed; nil is sync.
	Policy plan.Policy
	Limits plan.Limits
	// Known lists the sets defined and routed to this sink; an owned
	// entry of any other set is retired. Nil retires nothing.
	Known []string
	// Guards are not checked with Force.
	Guards plan.RunGuards
	Force  bool
}

// Shape routes the desired sets to the sink and shapes them as it holds
// them (a prefix list holds bare CIDRs). A Shaper's refusal, a
// *plan.GuardError, comes with the shaped sets, which are still planned
// and shown.
func (s Step) Shape(desired []plan.DesiredSet, current plan.State) ([]plan.DesiredSet, error) {
	d := Route(s.Spec, desired)
	if sh, ok := s.Sink.(Shaper); ok {
		return sh.Shape(d, current)
	}
	return d, nil
}

// Plan is the sink's plan: Shape, then plan.Input.Calculate. The error is
// Shape's refusal; the plan is returned with it, to be shown.
func (s Step) Plan(desired []plan.DesiredSet, current plan.State) (plan.SinkPlan, error) {
	d, refused := s.Shape(desired, current)
	p := plan.Input{Sink: s.Sink.Name(), Desired: d, Current: current, Policy: s.Policy,
		Limits: s.Limits, Known: s.Known}.Calculate()
	return p, refused
}

// Check runs the sink's own limits, then the run-level guards unless
// forced. Every
// plan goes through it, dry runs and saved plans included, before
// anything is applied.
func (s Step) Check(p plan.SinkPlan) error {
	if ch, ok := s.Sink.(Checker); ok {
		if err := ch.Check(p); err != nil {
			return err
		}
	}
	if s.Force {
		return nil
	}
	return s.Guards.Check(p)
}
