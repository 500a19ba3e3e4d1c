// Package vendor is the vendor source: {type: vendor, name: NAME, filters}
// fetches a vendor's published list with the URL, format, jq and change
// token the preset knows, so a config says what it wants, not how to
// parse it. Each list is fetched as an http source is (TLS, caps,
// conditional requests, min_interval, back-off).
package vendor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/pdsafelist/pdsafelist/pkg/oneline"
	"github.com/pdsafelist/pdsafelist/pkg/source"
	"github.com/pdsafelist/pdsafelist/pkg/source/httplist"
	"github.com/pdsafelist/pdsafelist/pkg/source/listformat"
)

// Preset is one vendor's published list or lists.
type Preset struct {
	Name  string
	Title string
	// URL is where the lists are, for people (firewalls must let the
	// fetch out); upper-case words stand for a filter's value.
	URL string
	// Doc is where the vendor documents the list.
	Doc     string
	Filters []Filter
	// Token is the top-level key of a change token; "" when none.
	Token string
	// MaxBytes is the size cap when larger than the global one.
	MaxBytes int64
	// MinIPv4 and MinIPv6 are the broadest prefixes the vendor publishes:
	// a set using the preset gets them as its default limits (0: the
	// global limit stands).
	MinIPv4, MinIPv6 int
	// Sunset is the day the vendor stops publishing the lists the preset
	// reads (YYYY-MM-DD), and SunsetNote what replaces them: every run
	// warns until then, so a list is not lost without notice.
	Sunset, SunsetNote string
	lists              func(Selection) []List
	check              func(Selection) error
}

// Filter is one key a preset takes besides name.
type Filter struct {
	Name, Help string
	// Values are the only values allowed; nil allows any value of
	// valuePattern (a region, a service).
	Values []string
	// Default applies when the filter is left out.
	Default  []string
	Required bool
}

// List is one document a preset fetches.
type List struct {
	URL, Format, JQ string
}

// Selection is the values chosen for each filter, defaults applied.
type Selection map[string][]string

// generalKeys are the keys a vendor source takes besides filters: the
// yaml keys of Options.
var generalKeys = []string{"name", "max_bytes", "min_interval", "backoff_after", "max_backoff"}

// valuePattern bounds free-form filter values: they end up in a jq
// string literal (quoted, but kept plain anyway) and in messages.
var valuePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_. :-]{0,63}$`)

// Names lists the presets, sorted.
func Names() []string { return slices.Sorted(maps.Keys(Presets)) }

// Factory registers the vendor source.
var Factory = source.Factory{
	Help:    "vendor  name (" + strings.Join(Names(), ", ") + "), its filters, max_bytes, min_interval, backoff_after, max_backoff: a vendor's published list (pdsafelist sources lists them)",
	Options: func() any { return DefaultOptions() },
	New:     build,
}

// Options are a vendor source's keys that are not filters; the filters
// depend on the preset (Presets). There is no token key: the preset
// knows its list's change token.
type Options struct {
	// Name is the preset: aws, github, google, ... (pdsafelist sources
	// lists them with their filters).
	Name string `yaml:"name"`
	// MaxBytes caps each list's size, never below the preset's own cap
	// (aws 8 MiB, github 4 MiB); 0 is that cap, or http.max_bytes for a
	// preset without one.
	MaxBytes int64 `yaml:"max_bytes"`
	// MinInterval is how long the last good answer is reused without a
	// request, for a fleet of hosts on a one-minute timer.
	MinInterval time.Duration `yaml:"min_interval"`
	// BackoffAfter is how many failures in a row start the back-off.
	BackoffAfter int `yaml:"backoff_after"`
	// MaxBackoff caps the doubling wait between attempts.
	MaxBackoff time.Duration `yaml:"max_backoff"`
}

// DefaultOptions are the keys a spec leaves out.
func DefaultOptions() Options {
	f := httplist.DefaultFetching()
	return Options{BackoffAfter: f.BackoffAfter, MaxBackoff: f.MaxBackoff}
}

func (g Options) fetching() httplist.Fetching {
	return httplist.Fetching{MinInterval: g.MinInterval, BackoffAfter: g.BackoffAfter, MaxBackoff: g.MaxBackoff}
}

func build(spec source.Spec, env source.Env) (source.Source, error) {
	p, sel, g, err := parse(spec)
	if err != nil {
		return nil, err
	}
	s := &vendorSource{name: describe(p, sel)}
	if p.Sunset != "" {
		s.warning = fmt.Sprintf("vendor %s: %s publishes these lists only until %s; %s", s.name, p.Title, p.Sunset, p.SunsetNote)
	}
	for _, l := range p.lists(sel) {
		o := httplist.Spec{URL: l.URL, Options: listformat.Options{Format: l.Format, JQ: l.JQ, MaxBytes: max(g.MaxBytes, p.MaxBytes)}, Fetching: g.fetching()}
		o.Token = p.Token
		if o.Format == "text" {
			o.Token = ""
		}
		src, err := httplist.Build(spec, env, o)
		if err != nil {
			return nil, err
		}
		s.lists = append(s.lists, src)
	}
	return s, nil
}

// parse reads the spec: the preset, its filters' values, and the general
// keys. Every mistake is one line naming the spec and what is valid.
func parse(spec source.Spec) (Preset, Selection, Options, error) {
	g := DefaultOptions()
	gen := yaml.Node{Kind: yaml.MappingNode}
	raw := map[string]*yaml.Node{}
	var order []string
	if spec.Options.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(spec.Options.Content); i += 2 {
			k, v := spec.Options.Content[i], spec.Options.Content[i+1]
			if slices.Contains(generalKeys, k.Value) {
				gen.Content = append(gen.Content, k, v)
				continue
			}
			raw[k.Value] = v
			order = append(order, k.Value)
		}
	}
	gs := spec
	gs.Options = gen
	if err := gs.Decode(&g); err != nil {
		return Preset{}, nil, g, err
	}
	if g.Name == "" {
		return Preset{}, nil, g, source.Errorf(spec, "vendor: missing name (known: %s)", strings.Join(Names(), ", "))
	}
	p, ok := Presets[g.Name]
	if !ok {
		return Preset{}, nil, g, source.Errorf(spec, "vendor %q: unknown preset (known: %s)", g.Name, strings.Join(Names(), ", "))
	}
	if g.MaxBytes < 0 {
		return p, nil, g, source.Errorf(spec, "vendor %s: max_bytes %d is negative", p.Name, g.MaxBytes)
	}
	sel := Selection{}
	for _, key := range order {
		f, ok := p.filter(key)
		if !ok {
			return p, nil, g, source.Errorf(spec, "vendor %s: unknown filter %q (filters: %s; other keys: type, until, %s)",
				p.Name, key, strings.Join(p.filterNames(), ", "), strings.Join(generalKeys, ", "))
		}
		vals, err := values(raw[key])
		if err == nil {
			err = f.check(vals)
		}
		if err != nil {
			return p, nil, g, source.Errorf(spec, "vendor %s: %s: %v", p.Name, key, err)
		}
		sel[key] = vals
	}
	for _, f := range p.Filters {
		if _, ok := sel[f.Name]; ok {
			continue
		}
		if f.Required {
			return p, nil, g, source.Errorf(spec, "vendor %s: filter %s is required (one or more of %s)", p.Name, f.Name, strings.Join(f.Values, ", "))
		}
		if f.Default != nil {
			sel[f.Name] = f.Default
		}
	}
	if p.check != nil {
		if err := p.check(sel); err != nil {
			return p, nil, g, source.Errorf(spec, "vendor %s: %v", p.Name, err)
		}
	}
	return p, sel, g, nil
}

// values reads a filter's value: one string or a list of them.
func values(n *yaml.Node) ([]string, error) {
	switch n.Kind {
	case yaml.ScalarNode:
		return []string{n.Value}, nil
	case yaml.SequenceNode:
		if len(n.Content) == 0 {
			return nil, errors.New("empty list")
		}
		var out []string
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				return nil, errors.New("want a string or a list of strings")
			}
			if !slices.Contains(out, c.Value) {
				out = append(out, c.Value)
			}
		}
		return out, nil
	}
	return nil, errors.New("want a string or a list of strings")
}

func (f Filter) check(vals []string) error {
	for _, v := range vals {
		if f.Values != nil && !slices.Contains(f.Values, v) {
			return fmt.Errorf("%q: want %s", oneline.String(v), strings.Join(f.Values, ", "))
		}
		if !valuePattern.MatchString(v) {
			return fmt.Errorf("%q: not a plain name", oneline.String(v))
		}
	}
	return nil
}

func (p Preset) filter(name string) (Filter, bool) {
	for _, f := range p.Filters {
		if f.Name == name {
			return f, true
		}
	}
	return Filter{}, false
}

func (p Preset) filterNames() []string {
	var out []string
	for _, f := range p.Filters {
		out = append(out, f.Name)
	}
	return out
}

// Lists are the documents the preset fetches for a spec's filters, with
// the preset's defaults applied: what a test compares with jq itself.
func Lists(spec source.Spec) ([]List, error) {
	p, sel, _, err := parse(spec)
	if err != nil {
		return nil, err
	}
	return p.lists(sel), nil
}

// describe names the source in output: the preset and its filters.
func describe(p Preset, sel Selection) string {
	var parts []string
	for _, f := range p.Filters {
		if v, ok := sel[f.Name]; ok {
			parts = append(parts, f.Name+"="+strings.Join(v, ","))
		}
	}
	if len(parts) == 0 {
		return p.Name
	}
	return p.Name + " (" + strings.Join(parts, " ") + ")"
}

// quote is v as a jq (JSON) string literal.
func quote(v string) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// eitherOf is `(X == "a" or X == "b")`.
func eitherOf(x string, vals []string) string {
	var parts []string
	for _, v := range vals {
		parts = append(parts, x+" == "+quote(v))
	}
	return "(" + strings.Join(parts, " or ") + ")"
}

// all is the condition that each named field (a string) is one of the
// values chosen for it; "true" when none is chosen.
func (s Selection) all(names ...string) string {
	var conds []string
	for _, n := range names {
		if v := s[n]; len(v) > 0 {
			conds = append(conds, eitherOf("."+n, v))
		}
	}
	if len(conds) == 0 {
		return "true"
	}
	return strings.Join(conds, " and ")
}

// anyOf is all for fields that are arrays: some element is one of the
// values.
func (s Selection) anyOf(names ...string) string {
	var conds []string
	for _, n := range names {
		if v := s[n]; len(v) > 0 {
			conds = append(conds, fmt.Sprintf("any(.%s[]; %s)", n, eitherOf(".", v)))
		}
	}
	if len(conds) == 0 {
		return "true"
	}
	return strings.Join(conds, " and ")
}

// anyOfField is anyOf for a filter whose array field is named otherwise.
func (s Selection) anyOfField(name, field string) string {
	if v := s[name]; len(v) > 0 {
		return fmt.Sprintf("any(.%s[]; %s)", field, eitherOf(".", v))
	}
	return "true"
}

// keys picks top-level arrays by name; a key the document lacks fails
// (null cannot be iterated), so a renamed list is noticed.
func (s Selection) keys(name string) string {
	var parts []string
	for _, k := range s[name] {
		parts = append(parts, ".["+quote(k)+"][]")
	}
	return strings.Join(parts, ", ")
}

// vendorSource is a preset's lists as one source: every list must answer,
// or the source fails.
type vendorSource struct {
	name    string
	lists   []source.Source
	warning string // the preset's sunset notice, on every run
}

func (s *vendorSource) Kind() source.Kind { return source.KindVendor }
func (s *vendorSource) Name() string      { return s.name }

func (s *vendorSource) Resolve(ctx context.Context) source.Result {
	res := source.Result{Kind: source.KindVendor, Name: s.name}
	if s.warning != "" {
		res.Warnings = append(res.Warnings, s.warning)
	}
	results := make([]source.Result, len(s.lists))
	var wg sync.WaitGroup
	for i, l := range s.lists {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = l.Resolve(ctx)
		}()
	}
	wg.Wait()
	var errs []string
	n := 0
	for _, r := range results {
		res.Warnings = append(res.Warnings, r.Warnings...)
		if r.Err != nil {
			errs = append(errs, oneline.Error(r.Err))
		}
		n += len(r.Addresses)
	}
	if len(errs) > 0 {
		res.Err = errors.New("vendor " + s.name + ": " + strings.Join(errs, "; "))
		return res
	}
	res.Addresses = make([]source.Address, 0, n)
	for _, r := range results {
		res.Addresses = append(res.Addresses, r.Addresses...)
	}
	res.Addresses = source.Merge(res.Addresses)
	return res
}

// SpecLimits are the default limits of the preset a vendor spec names:
// ok is false for another type, an unknown preset, or a preset whose
// prefixes the global limits already allow.
func SpecLimits(spec source.Spec) (minIPv4, minIPv6 int, ok bool) {
	if spec.Type != "vendor" || spec.Options.Kind != yaml.MappingNode {
		return 0, 0, false
	}
	for i := 0; i+1 < len(spec.Options.Content); i += 2 {
		if spec.Options.Content[i].Value == "name" {
			p, found := Presets[spec.Options.Content[i+1].Value]
			return p.MinIPv4, p.MinIPv6, found && (p.MinIPv4 > 0 || p.MinIPv6 > 0)
		}
	}
	return 0, 0, false
}
