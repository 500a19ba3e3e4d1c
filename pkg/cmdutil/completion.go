package cmdutil

import (
	"maps"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pdsafelist/pdsafelist/pkg/config"
	"github.com/pdsafelist/pdsafelist/pkg/plan"
)

// CompleteValues completes a flag from a fixed list.
func CompleteValues(values ...string) cobra.CompletionFunc {
	return func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
		return values, cobra.ShellCompDirectiveNoFileComp
	}
}

// CompletePolicy completes --policy.
func CompletePolicy() cobra.CompletionFunc { return CompleteValues(plan.PolicyNames()...) }

// CompleteRegion completes --region.
func CompleteRegion() cobra.CompletionFunc { return CompleteValues(config.Regions...) }

// CompleteSets completes --sets, a comma-separated list: the built-in
// sets and the config file's, after the names already typed.
func (f *Factory) CompleteSets() cobra.CompletionFunc {
	return func(cmd *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		names := map[string]bool{}
		for _, r := range config.Regions {
			if sets, err := config.Catalog(r, ""); err == nil {
				for _, s := range sets {
					names[s.Name] = true
				}
			}
		}
		// The config's own sets, when it loads; a broken config still
		// completes the built-in names.
		if f.Global != nil {
			f.Global.Flags = cmd.Flags()
		}
		if s, err := f.Settings(); err == nil {
			for n := range s.Catalog {
				names[n] = true
			}
		}
		done, _ := cutLast(toComplete)
		typed := strings.Split(done, ",")
		var out []cobra.Completion
		for _, n := range slices.Sorted(maps.Keys(names)) {
			if !slices.Contains(typed, n) {
				if done != "" {
					n = done + "," + n
				}
				out = append(out, n)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
	}
}

// CompleteSinkTypes completes --sink with the registered types.
func (f *Factory) CompleteSinkTypes() cobra.CompletionFunc {
	return func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
		var out []cobra.Completion
		for _, t := range f.Registry.Types() {
			sep := "?"
			if f.Registry[t].ArgKey != "" {
				sep = ":"
			}
			out = append(out, t+sep)
		}
		return out, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
	}
}

// cutLast splits "a,b,c" into "a,b" and "c".
func cutLast(s string) (done, last string) {
	i := strings.LastIndex(s, ",")
	if i < 0 {
		return "", s
	}
	return s[:i], s[i+1:]
}
