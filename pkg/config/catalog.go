package config

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/source"
	"github.com/pdsafelist/pdsafelist/pkg/source/httplist"
)

// DefaultListsURL is where PagerDuty publishes its safelists.
const DefaultListsURL = "https://developer.pagerduty.com/ip-safelists"

// LegacyWebhookIPsURL is frozen since 2022 and holds retired addresses, so
// it is only used when asked for.
const LegacyWebhookIPsURL = "https://app.pagerduty.com/webhook_ips"

// Regions lists the valid --region values.
var Regions = []string{"us", "eu", "all"}

// BuiltinSets are the catalog's set names, in display order.
var BuiltinSets = []string{"events", "api", "app", "webhooks"}

// SetSpec defines one named set: where its addresses come from and how
// sinks should allow them.
type SetSpec struct {
	Name      string   `yaml:"-"`
	Direction string   `yaml:"direction"`
	Protocol  string   `yaml:"protocol"`
	Ports     []uint16 `yaml:"ports"`
	DNS       []string `yaml:"dns"`
	URLs      []string `yaml:"urls"`
	Static    []string `yaml:"static"`
	// Sources is the general form: {type: dns|http|file|static, ...}.
	// dns, urls and static are shorthand for entries of it.
	Sources    []source.Spec `yaml:"sources"`
	MinEntries int           `yaml:"min_entries"`
	// Limits override the global limits for this set's prefixes; a key
	// left out keeps the global value.
	Limits *SetLimits `yaml:"limits"`
}

// SetLimits are one set's own limits.
type SetLimits struct {
	MinIPv4Bits *int `yaml:"min_ipv4_prefix"`
	MinIPv6Bits *int `yaml:"min_ipv6_prefix"`
}

// Over returns the global limits with this set's keys applied.
func (o *SetLimits) Over(global plan.Limits) plan.Limits {
	global.Sets = nil
	if o.MinIPv4Bits != nil {
		global.MinIPv4Bits = *o.MinIPv4Bits
	}
	if o.MinIPv6Bits != nil {
		global.MinIPv6Bits = *o.MinIPv6Bits
	}
	return global
}

// SourceSpecs returns every source of the set: the shorthand keys first,
// then the sources list, each named by where it sits in the config.
func (s SetSpec) SourceSpecs() []source.Spec {
	var out []source.Spec
	for i, h := range s.DNS {
		out = append(out, source.Spec{Type: "dns", Origin: fmt.Sprintf("catalog.%s.dns[%d]", s.Name, i), Options: source.Options("name", h)})
	}
	for i, u := range s.URLs {
		out = append(out, source.Spec{Type: "http", Origin: fmt.Sprintf("catalog.%s.urls[%d]", s.Name, i), Options: source.Options("url", u, "format", "json")})
	}
	if len(s.Static) > 0 {
		out = append(out, source.Spec{Type: "static", Origin: fmt.Sprintf("catalog.%s.static", s.Name), Options: source.Options("prefixes", s.Static)})
	}
	for i, sp := range s.Sources {
		sp.Origin = fmt.Sprintf("config catalog.%s.sources[%d]", s.Name, i)
		out = append(out, sp)
	}
	return out
}

// ActiveSourceSpecs is SourceSpecs without the sources whose until has
// come, which are returned apart so the caller can say they were dropped:
// an old list kept beside its replacement goes on its own at the cut-over.
func (s SetSpec) ActiveSourceSpecs(now time.Time) (active, expired []source.Spec) {
	for _, sp := range s.SourceSpecs() {
		if sp.Expired(now) {
			expired = append(expired, sp)
			continue
		}
		active = append(active, sp)
	}
	return active, expired
}

// Catalog returns PagerDuty's sets for a region.
func Catalog(region, listsURL string) ([]SetSpec, error) {
	var regions []string
	switch region {
	case "us", "eu":
		regions = []string{region}
	case "all":
		regions = []string{"us", "eu"}
	default:
		return nil, fmt.Errorf("region %q: want one of %s", region, strings.Join(Regions, ", "))
	}
	base := strings.TrimRight(listsURL, "/")
	host := func(name, r string) string {
		if r == "eu" {
			return name + ".eu.pagerduty.com"
		}
		return name + ".pagerduty.com"
	}
	sets := make([]SetSpec, 0, len(BuiltinSets))
	for _, name := range BuiltinSets {
		s := SetSpec{Name: name, Direction: "egress", Protocol: "tcp", Ports: []uint16{443}}
		for _, r := range regions {
			switch name {
			case "events", "app":
				s.DNS = append(s.DNS, host(name, r))
			case "api":
				s.DNS = append(s.DNS, host(name, r))
				s.URLs = append(s.URLs, fmt.Sprintf("%s/rest-api-%s-service-region-json", base, r))
			case "webhooks":
				s.Direction = "ingress"
				s.URLs = append(s.URLs, fmt.Sprintf("%s/webhooks-%s-service-region-json", base, r))
			}
		}
		sets = append(sets, s)
	}
	return sets, nil
}

// Set names become nftables identifiers, chain comments and EC2
// descriptions, so they are kept to a conservative alphabet.
var setNameRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,30}$`)

// Desired is the set's rule with no prefixes yet: its name, direction,
// protocol and ports. The spec must be valid (Validate); a direction or
// protocol it could not parse would be left unset.
func (s SetSpec) Desired() plan.DesiredSet {
	dir, _ := plan.ParseDirection(s.Direction)
	proto, _ := plan.ParseProtocol(strings.ToLower(s.Protocol))
	return plan.DesiredSet{Name: s.Name, Direction: dir, Protocol: proto, Ports: slices.Clone(s.Ports)}
}

// Validate checks a set definition in full.
func (s SetSpec) Validate() error {
	if !setNameRE.MatchString(s.Name) {
		return fmt.Errorf("set %q: name must match %s", s.Name, setNameRE)
	}
	if _, err := plan.ParseDirection(s.Direction); err != nil {
		return fmt.Errorf("set %s: %w", s.Name, err)
	}
	if _, err := plan.ParseProtocol(strings.ToLower(s.Protocol)); err != nil {
		return fmt.Errorf("set %s: %w", s.Name, err)
	}
	if len(s.Ports) == 0 {
		return fmt.Errorf("set %s: no ports", s.Name)
	}
	for _, p := range s.Ports {
		if p == 0 {
			return fmt.Errorf("set %s: port 0 is not a port", s.Name)
		}
	}
	specs := s.SourceSpecs()
	if len(specs) == 0 {
		return fmt.Errorf("set %s: no sources (sources, dns, urls or static)", s.Name)
	}
	for _, sp := range specs {
		if err := sp.Check(); err != nil {
			return err
		}
	}
	for _, u := range s.URLs {
		if err := httplist.CheckURL(u); err != nil {
			return fmt.Errorf("set %s: %w", s.Name, err)
		}
	}
	if s.MinEntries < 0 {
		return fmt.Errorf("set %s: min_entries %d is negative", s.Name, s.MinEntries)
	}
	return nil
}
