package source

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/pdsafelist/pdsafelist/pkg/config/yamlcheck"
	"github.com/pdsafelist/pdsafelist/pkg/oneline"
)

// Spec is one configured source before it is built: {type: http, url: ...}
// in a set's sources list, or one entry of the dns/urls/static shorthand.
type Spec struct {
	Type string
	// Origin says where the spec came from, for error messages, e.g.
	// "config catalog.vendor.sources[2]".
	Origin string
	// Options holds the type's own keys (everything but type) as a YAML
	// mapping.
	Options yaml.Node
	// File is the config file the options were read from, so errors can
	// say file:line; empty for built-in and shorthand sources.
	File string
	// Invalid records a shape problem found while decoding, reported by
	// Check once the origin is known.
	Invalid string
	// Until, when set, is when the source stops being used: an old list
	// kept beside its replacement until a vendor's cut-over. Every type
	// takes it.
	Until time.Time
}

// UnmarshalYAML keeps the mapping for the type's factory to decode.
func (s *Spec) UnmarshalYAML(n *yaml.Node) error {
	*s = Spec{}
	if n.Kind != yaml.MappingNode {
		s.Invalid = "want a mapping with a type"
		return nil
	}
	s.Options = yaml.Node{Kind: yaml.MappingNode}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Value == "type" {
			s.Type = v.Value
			continue
		}
		if k.Value == "until" {
			t, err := ParseUntil(v.Value)
			if err != nil && s.Invalid == "" {
				s.Invalid = err.Error()
			}
			s.Until = t
			continue
		}
		s.Options.Content = append(s.Options.Content, k, v)
	}
	if s.Type == "" {
		s.Invalid = "missing type"
	}
	return nil
}

// ParseUntil reads an until: value, a date (2006-01-02, from 00:00 UTC
// that day) or an RFC 3339 time.
func ParseUntil(v string) (time.Time, error) {
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t.UTC(), nil
	}
	return time.Time{}, fmt.Errorf("until %q: want a date (2006-01-02, from 00:00 UTC) or an RFC 3339 time", oneline.String(v))
}

// Expired reports whether the source's until has come.
func (s Spec) Expired(now time.Time) bool {
	return !s.Until.IsZero() && !now.Before(s.Until)
}

// Check reports a spec that is not a mapping with a type.
func (s Spec) Check() error {
	if s.Invalid != "" {
		return fmt.Errorf("%s: %s", s.Origin, s.Invalid)
	}
	return nil
}

// Options builds a spec's options from key, value pairs; the shorthand keys
// use it.
func Options(kv ...any) yaml.Node {
	var n yaml.Node
	m := map[string]any{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	if err := n.Encode(m); err != nil {
		panic(err) // only reachable with a value YAML cannot encode
	}
	return n
}

// Decode fills v, a pointer to a struct with yaml tags, from the options
// strictly: an unknown key is a one-line error naming the origin and every
// valid key, so a typo never silently drops a filter.
func (s Spec) Decode(v any) error {
	if s.Options.Kind == 0 {
		return nil
	}
	if err := yamlcheck.Decode(&s.Options, v, s.File); err != nil {
		var ye *yamlcheck.Error
		if errors.As(err, &ye) && ye.Valid != nil && !strings.Contains(ye.Key, ".") {
			ye.Of, ye.Valid = "type "+s.Type, append(append([]string{"type"}, ye.Valid...), "until")
		}
		return fmt.Errorf("%s: %w", s.Origin, err)
	}
	return nil
}

// NameResolver makes DNS sources; the dns package's Resolver is one. It is
// an interface so this package need not import dns.
type NameResolver interface {
	Source(host string) Source
}

// Env is what a source may use from its surroundings. Clients are built on
// first use, so a run without DNS sources needs no nameserver.
type Env struct {
	HTTPClient func() (*http.Client, error)
	Resolver   func() (NameResolver, error)
	// MaxBytes caps a list's size; 0 means the source's default.
	MaxBytes int64
	// Logger gets each fetch at debug; nil logs nothing.
	Logger *slog.Logger
	// Fetches remembers lists between runs (conditional requests,
	// min_interval, back-off); nil remembers nothing, so every run
	// fetches every list in full.
	Fetches FetchMemory
	// Now is the clock of intervals and back-off; nil is time.Now.
	Now func() time.Time
	// Shared is the run's work that sources share (one request for a URL
	// that several sources read); nil shares nothing.
	Shared *Shared
}

// Factory builds one source type. Help is one line for --help.
type Factory struct {
	Help string
	// Options returns the type's keys as a struct value holding their
	// defaults; scripts/gendocs reflects on it, with the fields' doc
	// comments, for the option table of docs/sources/TYPE.md.
	Options func() any
	New     func(spec Spec, env Env) (Source, error)
}

// Registry maps source types to factories.
type Registry map[string]Factory

// Types lists the registered types, sorted.
func (r Registry) Types() []string {
	return slices.Sorted(maps.Keys(r))
}

// Build makes the source a spec describes. Errors name the spec's origin.
func (r Registry) Build(spec Spec, env Env) (Source, error) {
	if err := spec.Check(); err != nil {
		return nil, err
	}
	f, ok := r[spec.Type]
	if !ok {
		return nil, fmt.Errorf("%s: unknown source type %q (known: %s)", spec.Origin, spec.Type, strings.Join(r.Types(), ", "))
	}
	return f.New(spec, env)
}

// Help lists every type's help line, for --help.
func (r Registry) Help() string {
	var b strings.Builder
	for _, t := range r.Types() {
		fmt.Fprintf(&b, "  %s\n", r[t].Help)
	}
	return strings.TrimRight(b.String(), "\n")
}

// Errorf is an error about a spec, naming where it came from.
func Errorf(spec Spec, format string, args ...any) error {
	return fmt.Errorf("%s: %s", spec.Origin, oneline.String(fmt.Sprintf(format, args...)))
}
