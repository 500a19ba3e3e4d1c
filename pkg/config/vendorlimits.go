package config

import (
	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/source/vendor"
)

// presetLimits are a set's default limits when it uses vendor presets:
// each family as broad as the broadest its presets publish (Google /10),
// never narrower than the global limits. ok is false when no preset of
// the set needs more than the global limits.
func presetLimits(s SetSpec, global plan.Limits) (plan.Limits, bool) {
	l := global
	l.Sets = nil
	ok := false
	for _, sp := range s.Sources {
		v4, v6, found := vendor.SpecLimits(sp)
		if !found {
			continue
		}
		if v4 > 0 && v4 < l.MinIPv4Bits {
			l.MinIPv4Bits, ok = v4, true
		}
		if v6 > 0 && v6 < l.MinIPv6Bits {
			l.MinIPv6Bits, ok = v6, true
		}
	}
	return l, ok
}
