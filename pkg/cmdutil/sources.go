package cmdutil

import "github.com/pdsafelist/pdsafelist/pkg/source"

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
