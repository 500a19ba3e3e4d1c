// Package sink defines where plans are applied. A sink reads the entries it
// owns and applies a plan; it decides nothing.
package sink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/pdsafelist/pdsafelist/pkg/config/yamlcheck"
	"github.com/pdsafelist/pdsafelist/pkg/oneline"
	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/selfmark"
)

// Sink is one target: an nftables file, a security group, a host's chains.
type Sink interface {
	// Name is stable across runs, e.g. "nftables:/etc/pdsafelist.nft".
	Name() string
	// Current returns the entries the sink holds: owned ones carry our
	// marker; foreign ones are identical rules we must not touch. Under
	// a ReadOnly ctx it writes nothing, not even a cache.
	Current(ctx context.Context) (plan.State, error)
	// Apply makes the changes in p, and only those. It must be safe to
	// re-run after a partial failure. p.Snapshot is what Current returned
	// in State.Snapshot, or nil for a plan made without a read.
	Apply(ctx context.Context, p plan.SinkPlan) error
}

// Shaper is implemented by sinks that hold less than a full entry, such as
// a managed prefix list, which stores CIDRs without ports or direction. The
// desired sets are reshaped before diffing, so the plan matches what the
// sink can hold and a re-run shows no changes. current is what Current
// returned, Snapshot included. An error (a *plan.GuardError) refuses the
// sink's plan as Check does; the shaped sets are still planned and shown.
type Shaper interface {
	Shape(desired []plan.DesiredSet, current plan.State) ([]plan.DesiredSet, error)
}

// Checker is implemented by sinks with limits of their own, such as EC2's
// rules per security group. Check runs on every plan, dry runs included,
// before anything is applied; an error refuses that sink's plan. Return a
// *plan.GuardError so the run exits 3 like the other guards. p.Snapshot
// is what Current read.
type Checker interface {
	Check(p plan.SinkPlan) error
}

// Env is what a sink may use from its surroundings; nothing else is global.
type Env struct {
	Logger  *slog.Logger
	OwnerID string
	Now     func() time.Time
	// SelfMark marks the tool's own sockets; a sink that enforces egress
	// enables it and accepts its mark. Nil: no mark.
	SelfMark *selfmark.Marker
	// AWS builds the config of AWS sinks; nil where no AWS sink is opened.
	AWS AWS
	// StateDir is the run's state directory, where a sink may keep a
	// cache of its own (never anything a run depends on); empty: none.
	StateDir string
}

// Spec is one configured sink before it is opened.
type Spec struct {
	Type string
	// Sets routed to this sink; empty means every selected set.
	Sets []string
	// Origin says where the spec came from, for error messages.
	Origin string
	// File is the config file the spec was read from, so errors can say
	// file:line; empty for --sink flags.
	File string
	// Options holds the type's own settings as a YAML mapping.
	Options yaml.Node
}

// Decode fills v from the options strictly, so a typo is an error rather
// than a silently ignored setting.
func (s Spec) Decode(v any) error {
	// The node is decoded directly, not a re-marshalled copy, so line
	// numbers are the config file's.
	if err := yamlcheck.Decode(&s.Options, v, s.File); err != nil {
		return fmt.Errorf("%s: %w", s.Origin, err)
	}
	return nil
}

// Factory opens one sink type. ArgKey names the option that the part after
// "type:" in --sink fills, e.g. "path" for nftables:PATH.
type Factory struct {
	ArgKey string
	Help   string
	// Options returns the type's option struct (a value, not a pointer)
	// holding its defaults. Open decodes into the same value, and
	// scripts/gendocs reflects on it, with the fields' doc comments, for
	// the option table of docs/sinks/TYPE.md.
	Options func() any
	Open    func(spec Spec, env Env) (Sink, error)
}

// Registry maps sink types to factories.
type Registry map[string]Factory

// Types lists the registered types, sorted.
func (r Registry) Types() []string {
	return slices.Sorted(maps.Keys(r))
}

// ParseFlag parses --sink TYPE[:ARG][?key=value&...].
func (r Registry) ParseFlag(s string) (Spec, error) {
	origin := fmt.Sprintf("--sink %s", s)
	rest, query, _ := strings.Cut(s, "?")
	typ, arg, hasArg := strings.Cut(rest, ":")
	f, ok := r[typ]
	if !ok {
		return Spec{}, fmt.Errorf("%s: unknown sink type %q (known: %s)", origin, typ, strings.Join(r.Types(), ", "))
	}
	m := &yaml.Node{Kind: yaml.MappingNode}
	add := func(k, v string) {
		m.Content = append(m.Content,
			&yaml.Node{Kind: yaml.ScalarNode, Value: k},
			&yaml.Node{Kind: yaml.ScalarNode, Value: v})
	}
	if hasArg {
		if f.ArgKey == "" {
			return Spec{}, fmt.Errorf("%s: sink type %s takes no argument", origin, typ)
		}
		if arg == "" {
			return Spec{}, fmt.Errorf("%s: empty %s", origin, f.ArgKey)
		}
		add(f.ArgKey, arg)
	}
	spec := Spec{Type: typ, Origin: origin}
	if query != "" {
		vals, err := url.ParseQuery(query)
		if err != nil {
			return Spec{}, fmt.Errorf("%s: options: %s", origin, oneline.Error(err))
		}
		keys := slices.Sorted(maps.Keys(vals))
		for _, k := range keys {
			v := vals[k][len(vals[k])-1]
			if k == "sets" {
				spec.Sets = splitList(v)
				continue
			}
			add(k, v)
		}
	}
	spec.Options = *m
	return spec, nil
}

// FromConfig turns one entry of the config's sinks list into a Spec.
func (r Registry) FromConfig(n *yaml.Node, index int) (Spec, error) {
	return r.FromConfigFile(n, index, "")
}

// FromConfigFile is FromConfig for an entry read from file, so option
// errors can say file:line.
func (r Registry) FromConfigFile(n *yaml.Node, index int, file string) (Spec, error) {
	origin := fmt.Sprintf("config sinks[%d]", index)
	if n.Kind != yaml.MappingNode {
		return Spec{}, fmt.Errorf("%s: want a mapping with a type", origin)
	}
	spec := Spec{Origin: origin, File: file}
	opts := &yaml.Node{Kind: yaml.MappingNode}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch k.Value {
		case "type":
			spec.Type = v.Value
		case "sets":
			if err := yamlcheck.Decode(v, &spec.Sets, file); err != nil {
				var ye *yamlcheck.Error
				if errors.As(err, &ye) {
					ye.Key = "sets"
				}
				return Spec{}, fmt.Errorf("%s: %w", origin, err)
			}
		default:
			opts.Content = append(opts.Content, k, v)
		}
	}
	if _, ok := r[spec.Type]; !ok {
		return Spec{}, fmt.Errorf("%s: unknown sink type %q (known: %s)", origin, spec.Type, strings.Join(r.Types(), ", "))
	}
	spec.Origin = fmt.Sprintf("%s (%s)", origin, spec.Type)
	spec.Options = *opts
	return spec, nil
}

// Open builds the sink a spec describes.
func (r Registry) Open(spec Spec, env Env) (Sink, error) {
	f, ok := r[spec.Type]
	if !ok {
		return nil, fmt.Errorf("%s: unknown sink type %q", spec.Origin, spec.Type)
	}
	return f.Open(spec, env)
}

// Route picks the desired sets a sink receives.
func Route(spec Spec, desired []plan.DesiredSet) []plan.DesiredSet {
	if len(spec.Sets) == 0 {
		return desired
	}
	out := make([]plan.DesiredSet, 0, len(spec.Sets))
	for _, d := range desired {
		if slices.Contains(spec.Sets, d.Name) {
			out = append(out, d)
		}
	}
	return out
}

// BareCIDRs shapes the desired sets for a store that holds bare CIDRs of
// one family (a managed prefix list, a WAF IP set): no direction, protocol
// or port, and only IPv6 or only IPv4 prefixes. It returns how many it
// left out for the other family, which the sink logs.
func BareCIDRs(desired []plan.DesiredSet, v6 bool) (shaped []plan.DesiredSet, leftOut int) {
	keep := func(ps []netip.Prefix) (kept []netip.Prefix, dropped int) {
		for _, p := range ps {
			// Neither store takes /0; the plan's validation refuses it anyway.
			if p.Addr().Is6() == v6 && p.Bits() > 0 {
				kept = append(kept, p.Masked())
			} else {
				dropped++
			}
		}
		return kept, dropped
	}
	shaped = make([]plan.DesiredSet, 0, len(desired))
	for _, d := range desired {
		c := plan.DesiredSet{Name: d.Name, Ports: []uint16{0}, Frozen: d.Frozen, Reason: d.Reason}
		var n int
		c.Prefixes, n = keep(d.Prefixes)
		leftOut += n
		c.LastKnown, _ = keep(d.LastKnown)
		shaped = append(shaped, c)
	}
	return shaped, leftOut
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
