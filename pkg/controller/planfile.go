package controller

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/pdsafelist/pdsafelist/pkg/oneline"
	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
)

// PlanFileVersion changes only with an incompatible layout.
const PlanFileVersion = 1

// SavedPlan is what --plan-out writes and --plan applies: each sink's spec,
// the fingerprint of the state the plan was made against, and the plan.
// Saved plans travel between CI jobs, so a loaded one is untrusted input:
// ParsePlan checks its shape and ApplySaved checks it against the sinks.
type SavedPlan struct {
	FormatVersion int         `json:"format_version"`
	CreatedAt     time.Time   `json:"created_at"`
	Policy        string      `json:"policy"`
	Sinks         []SavedSink `json:"sinks"`
}

// SavedSink is one sink's spec and plan.
type SavedSink struct {
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

// NewSavedPlan records r's plans. It refuses a plan with errors: applying
// half a plan later would be a surprise.
func NewSavedPlan(now time.Time, policy string, targets []Target, r *Run) (*SavedPlan, error) {
	doc := &SavedPlan{FormatVersion: PlanFileVersion, CreatedAt: now.UTC(), Policy: policy, Sinks: []SavedSink{}}
	var errs []error
	for i, t := range targets {
		rep := r.Report.Sinks[i]
		if rep.Err != nil {
			errs = append(errs, rep.Err)
			continue
		}
		var opts string
		if t.Spec.Options.Kind != 0 {
			data, err := yaml.Marshal(&t.Spec.Options)
			if err != nil {
				return nil, err
			}
			opts = string(data)
		}
		doc.Sinks = append(doc.Sinks, SavedSink{
			Type: t.Spec.Type, Sets: t.Spec.Sets, Origin: t.Spec.Origin, Options: opts, Name: t.Sink.Name(),
			Fingerprint: r.States[i].Fingerprint(),
			Add:         nonNil(rep.Plan.Add), Remove: nonNil(rep.Plan.Remove), Keep: nonNil(rep.Plan.Keep),
			Covered: rep.Plan.Covered, Held: rep.Plan.Held, Drift: rep.Plan.Drift,
		})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return doc, nil
}

func nonNil(es []plan.Entry) []plan.Entry {
	if es == nil {
		return []plan.Entry{}
	}
	return es
}

var fingerprintRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// ParsePlan decodes a saved plan and checks everything that does not need
// the sinks: the layout, every entry it adds, keeps or shows as covered
// (Entry.Validate), and each sink's spec. What it removes is checked
// against the sink at apply time, as it may be an unsafe entry read back.
func ParsePlan(data []byte, limits plan.Limits) (*SavedPlan, error) {
	// What the plan says is refused as a guard refuses: exit 3.
	refuse := func(where string, err error) error {
		return &plan.GuardError{Guard: plan.GuardSavedPlan, Sink: where, Msg: err.Error()}
	}
	var doc SavedPlan
	if err := json.Unmarshal(data, &doc); err != nil {
		// A direction or protocol no sink writes is an edit, as an unsafe
		// prefix is, not a file of another kind.
		if ne := (*plan.NameError)(nil); errors.As(err, &ne) {
			return nil, refuse("plan", ne)
		}
		return nil, fmt.Errorf("not a pdsafelist plan: %s", oneline.Error(err))
	}
	if doc.FormatVersion != PlanFileVersion {
		return nil, fmt.Errorf("format_version %d, want %d", doc.FormatVersion, PlanFileVersion)
	}
	if _, ok := plan.Policies[doc.Policy]; !ok {
		return nil, refuse("plan", fmt.Errorf("policy %q: unknown", doc.Policy))
	}
	if len(doc.Sinks) == 0 {
		return nil, refuse("plan", fmt.Errorf("no sinks"))
	}
	for i, ss := range doc.Sinks {
		if err := ss.check(limits); err != nil {
			return nil, refuse(fmt.Sprintf("sinks[%d]", i), err)
		}
	}
	return &doc, nil
}

func (ss SavedSink) check(limits plan.Limits) error {
	switch {
	case ss.Type == "" || ss.Name == "":
		return fmt.Errorf("no sink type or name")
	case !fingerprintRE.MatchString(ss.Fingerprint):
		return fmt.Errorf("%q: state_fingerprint %q is not a SHA-256", ss.Name, ss.Fingerprint)
	case ss.Held < 0:
		return fmt.Errorf("%q: held %d", ss.Name, ss.Held)
	}
	for _, name := range ss.Sets {
		if !plan.ValidSetName(name) {
			return fmt.Errorf("%q: routes set %q: not a set name", ss.Name, name)
		}
	}
	for _, group := range []struct {
		what    string
		entries []plan.Entry
	}{{"add", ss.Add}, {"keep", ss.Keep}, {"covered", ss.Covered}} {
		for _, e := range group.entries {
			if err := e.Validate(limits); err != nil {
				return fmt.Errorf("%q: %s: %w", ss.Name, group.what, err)
			}
		}
	}
	for _, e := range ss.Remove {
		if !e.Prefix.IsValid() {
			return fmt.Errorf("%q: remove: entry %q: invalid prefix", ss.Name, e.String())
		}
	}
	return nil
}

// Spec rebuilds the sink spec the plan was made for.
func (ss SavedSink) Spec(origin string) (sink.Spec, error) {
	spec := sink.Spec{Type: ss.Type, Sets: ss.Sets, Origin: origin}
	if ss.Options != "" {
		var n yaml.Node
		if err := yaml.Unmarshal([]byte(ss.Options), &n); err != nil || len(n.Content) != 1 || n.Content[0].Kind != yaml.MappingNode {
			return spec, fmt.Errorf("%s: bad options", origin)
		}
		spec.Options = *n.Content[0]
	}
	return spec, nil
}
