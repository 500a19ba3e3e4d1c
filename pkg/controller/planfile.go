package controller

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/pdsafelist/pdsafelist/pkg/oneline"
	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
)

// PlanFileVersion changes only with an incompatible layout. Version 2
// names each sink by a digest of its spec instead of carrying its options,
// and is authenticated.
const PlanFileVersion = 2

// SavedPlan is what --plan-out writes and --plan applies: which sinks it
// was made for, the fingerprint of what each held, and the plan. Saved
// plans travel between CI jobs, so a loaded one is untrusted input: its
// code proves it was made with the key (ParsePlan), its sinks must be the
// ones the applying run opens from its own config (MatchSinks), and its
// entries must be what a live run could plan (ApplySaved). It carries no
// option, so it can never choose a command or a path.
type SavedPlan struct {
	FormatVersion int         `json:"format_version"`
	CreatedAt     time.Time   `json:"created_at"`
	Policy        string      `json:"policy"`
	Sinks         []SavedSink `json:"sinks"`
	// MAC is "hmac-sha256:" and the hex HMAC-SHA256 of the plan's
	// canonical form (see Sign).
	MAC string `json:"mac,omitempty"`
}

// SavedSink is one sink's plan and the sink it was made for.
type SavedSink struct {
	Type   string   `json:"type"`
	Sets   []string `json:"sets,omitempty"`
	Origin string   `json:"origin"`
	// Spec is sink.Spec.Digest of the spec the plan was made with.
	Spec        string       `json:"spec_sha256"`
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
		doc.Sinks = append(doc.Sinks, SavedSink{
			Type: t.Spec.Type, Sets: t.Spec.Sets, Origin: t.Spec.Origin, Spec: t.Spec.Digest(), Name: t.Sink.Name(),
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

var (
	fingerprintRE = regexp.MustCompile(`^[0-9a-f]{64}$`)
	macRE         = regexp.MustCompile(`^hmac-sha256:[0-9a-f]{64}$`)
)

// macContext separates a plan's code from any other use of the key.
const macContext = "pdsafelist saved plan\n"

// mac is the code of doc's canonical form: the plan as Go marshals it,
// compactly, without its code. Parsing and marshalling again gives the
// same bytes, so an edit to anything the plan means changes the code.
func (doc SavedPlan) mac(key []byte) (string, error) {
	doc.MAC = ""
	data, err := json.Marshal(doc)
	if err != nil {
		return "", err
	}
	m := hmac.New(sha256.New, key)
	io.WriteString(m, macContext)
	m.Write(data)
	return "hmac-sha256:" + hex.EncodeToString(m.Sum(nil)), nil
}

// Sign sets doc's code with key.
func Sign(doc *SavedPlan, key []byte) error {
	mac, err := doc.mac(key)
	if err != nil {
		return err
	}
	doc.MAC = mac
	return nil
}

// ParsePlan decodes a saved plan, proves it was made with key, and checks
// everything that does not need the sinks: the layout, every entry it
// adds, keeps or shows as covered (Entry.Validate), and each sink's
// record. What it removes is checked against the sink at apply time, as it
// may be an unsafe entry read back. Duplicate and unknown keys are
// refused: a reader that takes the first of two keys would see another
// plan than the one that was signed.
func ParsePlan(data []byte, key []byte, limits plan.Limits) (*SavedPlan, error) {
	// What the plan says is refused as a guard refuses: exit 3.
	refuse := func(where string, err error) error {
		return &plan.GuardError{Guard: plan.GuardSavedPlan, Sink: where, Msg: err.Error()}
	}
	var head struct {
		FormatVersion int `json:"format_version"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, fmt.Errorf("not a pdsafelist plan: %s", oneline.Error(err))
	}
	if head.FormatVersion != PlanFileVersion {
		return nil, fmt.Errorf("format_version %d, want %d; run sync --plan-out again with this version", head.FormatVersion, PlanFileVersion)
	}
	if err := uniqueKeys(data); err != nil {
		return nil, refuse("plan", err)
	}
	var doc SavedPlan
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		// A direction or protocol no sink writes, or a key no plan has,
		// is an edit, as an unsafe prefix is, not a file of another kind.
		if ne := (*plan.NameError)(nil); errors.As(err, &ne) {
			return nil, refuse("plan", ne)
		}
		if strings.HasPrefix(err.Error(), "json: unknown field") {
			return nil, refuse("plan", errors.New(strings.TrimPrefix(err.Error(), "json: ")))
		}
		return nil, fmt.Errorf("not a pdsafelist plan: %s", oneline.Error(err))
	}
	switch want, err := doc.mac(key); {
	case err != nil:
		return nil, refuse("plan", err)
	case doc.MAC == "":
		return nil, refuse("plan", errors.New("no authentication code (mac); only a plan written by sync --plan-out is applied"))
	case !macRE.MatchString(doc.MAC) || !hmac.Equal([]byte(doc.MAC), []byte(want)):
		return nil, refuse("plan", errors.New("authentication failed: the plan was edited, or made with another key (--plan-key-file, $PDSAFELIST_PLAN_KEY)"))
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

// uniqueKeys refuses an object with a key twice, in any case, since
// encoding/json matches keys without regard to case and keeps the last.
func uniqueKeys(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	type object struct {
		keys    map[string]bool
		wantKey bool
	}
	var stack []*object
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return errors.New(oneline.Error(err))
		}
		var top *object
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.wantKey {
			if k, ok := tok.(string); ok {
				if top.keys[strings.ToLower(k)] {
					return fmt.Errorf("duplicate key %q", k)
				}
				top.keys[strings.ToLower(k)] = true
				top.wantKey = false
				continue
			}
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &object{keys: map[string]bool{}, wantKey: true})
			continue
		case json.Delim('['):
			stack = append(stack, nil)
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		// A value ends; the object around it wants its next key.
		if len(stack) > 0 && stack[len(stack)-1] != nil {
			stack[len(stack)-1].wantKey = true
		}
	}
}

// MatchSinks checks that the applying run opens exactly the sinks the plan
// was made for, in order: same type, same sets, same options. It runs
// before any sink is opened, so nothing the plan says can start a command
// or touch a path.
func MatchSinks(doc *SavedPlan, specs []sink.Spec) error {
	refuse := func(where, format string, args ...any) error {
		return &plan.GuardError{Guard: plan.GuardSavedPlan, Sink: where,
			Msg: fmt.Sprintf(format, args...) + "; apply it with the config and --sink flags it was made with"}
	}
	if len(specs) != len(doc.Sinks) {
		return refuse("plan", "the plan was made for %d sinks, this run opens %d", len(doc.Sinks), len(specs))
	}
	for i, spec := range specs {
		ss := doc.Sinks[i]
		if spec.Type != ss.Type || spec.Digest() != ss.Spec {
			return refuse(ss.Name, "%s is not the sink the plan was made for (%s, %s)", spec.Origin, ss.Type, ss.Origin)
		}
	}
	return nil
}

func (ss SavedSink) check(limits plan.Limits) error {
	switch {
	case ss.Type == "" || ss.Name == "":
		return fmt.Errorf("no sink type or name")
	case !fingerprintRE.MatchString(ss.Spec):
		return fmt.Errorf("%q: spec_sha256 %q is not a SHA-256", ss.Name, ss.Spec)
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
