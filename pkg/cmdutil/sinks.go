package cmdutil

import (
	"context"
	"fmt"
	"strings"

	"github.com/pdsafelist/pdsafelist/pkg/config"
	"github.com/pdsafelist/pdsafelist/pkg/controller"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
)

// SinkSpecs are the sinks of a run: the --sink flags, else the config
// file's, else the default nftables file. sync and check both use it, so
// a preflight checks exactly the sinks a sync would write.
func (f *Factory) SinkSpecs(flags []string, s config.Settings) ([]sink.Spec, error) {
	var specs []sink.Spec
	switch {
	case len(flags) > 0:
		for _, flag := range flags {
			spec, err := f.Registry.ParseFlag(flag)
			if err != nil {
				return nil, err
			}
			specs = append(specs, spec)
		}
	case len(s.Sinks) > 0:
		for i := range s.Sinks {
			spec, err := f.Registry.FromConfigFile(&s.Sinks[i], i, s.ConfigFile)
			if err != nil {
				return nil, err
			}
			specs = append(specs, spec)
		}
	default:
		specs = append(specs, f.DefaultSink)
	}
	return specs, nil
}

// OpenSinks opens the sinks; with sets given, every set a spec routes
// must be one of them.
func (f *Factory) OpenSinks(ctx context.Context, s config.Settings, specs []sink.Spec, sets []config.SetSpec) ([]controller.Target, error) {
	selected := map[string]bool{}
	names := make([]string, len(sets))
	for i, set := range sets {
		selected[set.Name] = true
		names[i] = set.Name
	}
	env := f.SinkEnv(ctx, s)
	seen := map[string]string{}
	out := make([]controller.Target, 0, len(specs))
	var sinks []sink.Sink
	for _, spec := range specs {
		for _, name := range spec.Sets {
			if sets != nil && !selected[name] {
				return nil, fmt.Errorf("%s: set %q is not selected (selected: %s)", spec.Origin, name, strings.Join(names, ", "))
			}
		}
		sk, err := f.Registry.Open(spec, env)
		if err != nil {
			return nil, err
		}
		// Two specs for one target would fight over its entries.
		if prev, dup := seen[sk.Name()]; dup {
			return nil, fmt.Errorf("%s: same target as %s (%s)", spec.Origin, prev, sk.Name())
		}
		seen[sk.Name()] = spec.Origin
		out = append(out, controller.Target{Spec: spec, Sink: sk})
		sinks = append(sinks, sk)
	}
	if err := sink.CheckDistinctFiles(sinks); err != nil {
		return nil, err
	}
	return out, nil
}
