package cmdutil

import (
	"context"

	"github.com/pdsafelist/pdsafelist/pkg/config"
	"github.com/pdsafelist/pdsafelist/pkg/resolution"
	"github.com/pdsafelist/pdsafelist/pkg/source"
)

// SourceHelp describes the source types for resolve's and sync's --help,
// generated from the registry so a new type documents itself.
func SourceHelp(r source.Registry) string {
	return `A set's sources come from the config's catalog: a sources: list of
{type: TYPE, key: value, ...} entries, where dns: [HOST...], urls: [URL...]
and static: [CIDR...] are shorthand for dns, http (json) and static entries.
A set's limits: {min_ipv4_prefix: N, min_ipv6_prefix: N} loosen or tighten
the global limits for that set alone. A worked example for AWS, GitHub, Google, Atlassian, Cloudflare and Stripe
is docs/sources.example.yaml. Source types and their keys:
` + r.Help()
}

// ResolveSets resolves the selected sets under the run's deadline: resolve
// and sync both call it, so both see exactly the same answers.
func (f *Factory) ResolveSets(ctx context.Context, s config.Settings) ([]resolution.SetResult, error) {
	return f.ResolveSetsRemembering(ctx, s, nil)
}

// ResolveSetsRemembering is ResolveSets with the published lists' memory
// between runs: conditional requests, min_interval and back-off.
func (f *Factory) ResolveSetsRemembering(ctx context.Context, s config.Settings, fetches source.FetchMemory) ([]resolution.SetResult, error) {
	specs, err := s.SelectedSets()
	if err != nil {
		return nil, err
	}
	build, err := f.sourceBuilder(s, fetches)
	if err != nil {
		return nil, err
	}
	if s.WebhookIPsURL != "" {
		f.Logger().Warn("using the legacy webhook list: it is frozen since 2022 and holds retired IPs that may now belong to anyone; prefer the published webhooks list",
			"url", s.WebhookIPsURL)
	}
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	return resolution.Run(ctx, specs, build, s.Limits), nil
}
