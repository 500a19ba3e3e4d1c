package controller

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
)

// ApplySaved applies exactly a saved plan, through the same guards and
// apply as a live run. Like Terraform it is all or nothing: when any sink
// changed since the plan was made, or any sink's plan is not one a live run
// could have made against what the sink holds now, or a guard refuses,
// nothing is written anywhere. The targets are the run's own sinks, which
// MatchSinks found to be the ones doc was made for, in order.
func (c *Controller) ApplySaved(ctx context.Context, doc *SavedPlan) (*Run, error) {
	r := &Run{Start: c.Now(), Saved: true}
	if len(c.Targets) != len(doc.Sinks) {
		return nil, fmt.Errorf("plan has %d sinks, %d opened", len(doc.Sinks), len(c.Targets))
	}
	for i, t := range c.Targets {
		if t.Sink.Name() != doc.Sinks[i].Name {
			return nil, &plan.GuardError{Guard: plan.GuardSavedPlan, Sink: doc.Sinks[i].Name,
				Msg: fmt.Sprintf("%s opens %s, not the sink the plan was made for", t.Spec.Origin, t.Sink.Name())}
		}
	}
	st, err := c.loadState(ctx, false)
	if err != nil {
		return nil, err
	}
	sinkCtx, cancel := context.WithTimeout(ctx, c.RunTimeout)
	defer cancel()
	c.read(sinkCtx, r)
	for i, t := range c.Targets {
		rep := &r.Report.Sinks[i]
		if rep.Err != nil {
			continue
		}
		rep.Plan, rep.Err = c.verify(t, doc.Sinks[i], r.States[i], doc.CreatedAt)
	}
	c.warnReadBack(r)
	c.guard(r)
	refused := false
	for _, rep := range r.Report.Sinks {
		refused = refused || rep.Err != nil
	}
	if !refused {
		c.apply(sinkCtx, r)
	}
	c.end(ctx, sinkCtx, r, st, false, nil)
	return r, r.Err
}

// verify turns one saved sink plan into the plan to apply. It accepts only
// what a live run could have planned against cur: keep and remove are
// exactly what the sink holds under our marker, what stays passes the
// validation answers pass, what is added is a valid entry of a set defined
// and routed to this sink in the shape the sink holds, and removals are
// what the policy allows. Unsafe and Retired are worked out again here,
// never read from the file.
func (c *Controller) verify(t Target, ss SavedSink, cur plan.State, created time.Time) (plan.SinkPlan, error) {
	if cur.Fingerprint() != ss.Fingerprint {
		return plan.SinkPlan{Sink: ss.Name}, &plan.GuardError{Guard: plan.GuardStalePlan, Sink: ss.Name,
			Msg: fmt.Sprintf("the sink changed since the plan was made at %s; run sync --plan-out again", created.Format(time.RFC3339))}
	}
	p := plan.SinkPlan{Sink: ss.Name, Add: plan.Sort(slices.Clone(ss.Add)), Remove: plan.Sort(slices.Clone(ss.Remove)),
		Keep: plan.Sort(slices.Clone(ss.Keep)), Covered: plan.Sort(slices.Clone(ss.Covered)), Held: ss.Held,
		Drift: slices.Clone(cur.Drift), Snapshot: cur.Snapshot}
	// A refused plan is not shown: it may name what the sink never held.
	refuse := func(format string, args ...any) (plan.SinkPlan, error) {
		return plan.SinkPlan{Sink: ss.Name}, &plan.GuardError{Guard: plan.GuardSavedPlan, Sink: ss.Name, Msg: fmt.Sprintf(format, args...) + "; run sync --plan-out again"}
	}
	owned := make(map[plan.Entry]bool, len(cur.Owned))
	for _, e := range cur.Owned {
		owned[e] = true
	}
	// An entry whose ownership record no longer parses is held with no
	// set; the plan gave it one, so it is matched without its set, once.
	unlabelled := make(map[plan.Entry]int, len(cur.Unlabelled))
	for _, e := range cur.Unlabelled {
		e.Set = ""
		unlabelled[e]++
	}
	if len(p.Keep)+len(p.Remove) != len(ss.Keep)+len(ss.Remove) {
		return refuse("keep or remove lists an entry twice")
	}
	seen := make(map[plan.Entry]bool, len(owned))
	for _, e := range slices.Concat(p.Keep, p.Remove) {
		bare := e
		bare.Set = ""
		switch {
		case seen[e]:
			return refuse("both keeps and removes %q", e.String())
		case owned[e]:
			seen[e] = true
		case unlabelled[bare] > 0:
			unlabelled[bare]--
		default:
			return refuse("keeps or removes %q, which the sink does not hold under our marker", e.String())
		}
	}
	if len(seen) != len(owned) {
		for _, e := range plan.Sort(slices.Clone(cur.Owned)) {
			if !seen[e] {
				return refuse("neither keeps nor removes %q, which the sink holds (%d of %d held entries are accounted for)", e.String(), len(seen), len(owned))
			}
		}
	}
	for e, n := range unlabelled {
		if n > 0 {
			return refuse("neither keeps nor removes %q, which the sink holds with an unreadable ownership record", e.String())
		}
	}
	known := map[string]bool{}
	for _, name := range c.known(t) {
		known[name] = true
	}
	for _, e := range p.Keep {
		if err := e.Validate(c.Limits); err != nil {
			return refuse("keeps an entry a live run would remove: %s", err)
		}
		if c.Defined != nil && !known[e.Set] {
			return refuse("keeps %q of a set not defined or not routed to this sink", e.String())
		}
	}
	shapes := c.shapes(t, cur)
	for _, e := range p.Add {
		if err := e.Validate(c.Limits); err != nil {
			return refuse("adds %s", err)
		}
		if owned[e] {
			return refuse("adds %q, which the sink already holds", e.String())
		}
		d, ok := shapes[e.Set]
		if !ok {
			return refuse("adds %q of a set not defined or not routed to this sink", e.String())
		}
		if e.Direction != d.Direction || e.Protocol != d.Protocol || !slices.Contains(d.Ports, e.Port) {
			return refuse("adds %q, but set %s is %s %s on ports %v here", e.String(), d.Name, d.Direction, d.Protocol, d.Ports)
		}
	}
	for _, e := range p.Covered {
		if err := e.Validate(c.Limits); err != nil {
			return refuse("covered: %s", err)
		}
	}
	var rest []plan.Entry
	for _, e := range p.Remove {
		switch {
		case e.Validate(c.Limits) != nil:
			p.Unsafe = append(p.Unsafe, e)
		case c.Defined != nil && !known[e.Set]:
			p.Retired = append(p.Retired, e)
			rest = append(rest, e)
		default:
			rest = append(rest, e)
		}
	}
	// The policy decides what may go, as it does for a live plan.
	if len(rest) > 0 {
		if _, kept := plan.Policies[c.Policy].Filter(nil, rest, true); len(kept) < len(rest) {
			return refuse("removes %d valid entries, which policy %s never does", len(rest), c.Policy)
		}
	}
	return p, nil
}

// shapes gives the desired-set shape of every set defined and routed to
// t, as the sink holds it: a prefix list holds bare CIDRs. A set defined
// but invalid has no shape, so nothing is added to it.
func (c *Controller) shapes(t Target, cur plan.State) map[string]plan.DesiredSet {
	var ds []plan.DesiredSet
	for _, name := range c.known(t) {
		shape := c.Defined[name]
		if shape == nil {
			continue
		}
		d := *shape
		d.Name = name
		ds = append(ds, d)
	}
	// Sets without addresses claim nothing, so Shape refuses nothing.
	ds, _ = c.step(t).Shape(ds, cur)
	out := make(map[string]plan.DesiredSet, len(ds))
	for _, d := range ds {
		out[d.Name] = d
	}
	return out
}
