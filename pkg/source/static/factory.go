package static

import (
	"strings"

	"github.com/pdsafelist/pdsafelist/pkg/source"
)

// Spec is the static source's keys in a set's sources list.
type Spec struct {
	// Prefixes are addresses or CIDRs; a CIDR with host bits set is
	// refused, not masked.
	Prefixes []string `yaml:"prefixes"`
}

// Factory registers the static source.
var Factory = source.Factory{
	Help:    "static  prefixes: addresses or CIDRs written in the config",
	Options: func() any { return Spec{} },
	New: func(spec source.Spec, _ source.Env) (source.Source, error) {
		var o Spec
		if err := spec.Decode(&o); err != nil {
			return nil, err
		}
		if len(o.Prefixes) == 0 {
			return nil, source.Errorf(spec, "no prefixes")
		}
		// Named by its place in the config, as "catalog.SET.static" was.
		return New(strings.TrimPrefix(spec.Origin, "config "), o.Prefixes), nil
	},
}
