package config

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/selfmark"
	"github.com/pdsafelist/pdsafelist/pkg/source/httplist"
	"github.com/pdsafelist/pdsafelist/pkg/state"
)

// Settings is the effective configuration: defaults, then the file, then
// flags.
type Settings struct {
	Region        string
	Sets          []string
	ListsURL      string
	WebhookIPsURL string
	Nameservers   []string
	CAFile        string
	Timeout       time.Duration
	DNS           DNS
	HTTP          HTTP
	Limits        plan.Limits
	Policy        string
	OwnerID       string
	StateDir      string
	Grace         time.Duration
	// MaxTTL caps the TTL retention honours.
	MaxTTL time.Duration
	// Guards are the run-level guards (max_delete).
	Guards      plan.RunGuards
	MetricsFile string
	Notify      Notify
	// SelfMark is the config's self_mark as written; empty means the
	// default mark, used only when a sink enforces egress.
	SelfMark string
	// MinEntries overrides sets' min_entries from the command line; the
	// key "*" applies to every set.
	MinEntries map[string]int
	Catalog    map[string]SetSpec
	Sinks      []yaml.Node
	// ConfigFile is the file Sinks were read from, for error messages.
	ConfigFile string
}

// Defaults returns the built-in settings.
func Defaults() Settings {
	return Settings{
		Region:   "us",
		ListsURL: DefaultListsURL,
		Timeout:  30 * time.Second,
		DNS:      DNS{Attempts: 3, QueryTimeout: 2 * time.Second, MaxCNAMEDepth: 8},
		HTTP:     HTTP{Timeout: 15 * time.Second, MaxRedirects: 3, MaxBytes: 1 << 20},
		Limits:   plan.DefaultLimits,
		Policy:   "sync",
		Grace:    time.Hour,
		MaxTTL:   state.DefaultMaxTTL,
		Guards:   plan.DefaultRunGuards,
		Notify:   Notify{URL: DefaultEventsURL, Timeout: 30 * time.Second},
	}
}

// MaxMaxTTL is the largest max_ttl accepted.
const MaxMaxTTL = 7 * 24 * time.Hour

// DefaultEventsURL is PagerDuty's Events API v2 endpoint.
const DefaultEventsURL = "https://events.pagerduty.com/v2/enqueue"

// defaultFile is Defaults as a config file, the value Parse decodes onto.
func defaultFile() *File {
	d := Defaults()
	return &File{
		Region: d.Region, Sets: d.Sets, PagerDutyListsURL: d.ListsURL, WebhookIPsURL: d.WebhookIPsURL,
		Nameservers: d.Nameservers, CAFile: d.CAFile, Timeout: d.Timeout, DNS: d.DNS, HTTP: d.HTTP,
		Limits: d.Limits, Policy: d.Policy, OwnerID: d.OwnerID, StateDir: d.StateDir, Grace: d.Grace,
		MaxTTL: d.MaxTTL, RunGuards: d.Guards, MetricsFile: d.MetricsFile, Notify: d.Notify,
		Catalog: d.Catalog, Sinks: d.Sinks,
	}
}

// Apply takes every setting from f, which Parse and Load decode onto the
// defaults and have already checked.
func (s Settings) Apply(f *File) Settings {
	s.Region, s.Sets, s.ListsURL, s.WebhookIPsURL = f.Region, f.Sets, f.PagerDutyListsURL, f.WebhookIPsURL
	s.Nameservers, s.CAFile, s.Timeout, s.DNS, s.HTTP = f.Nameservers, f.CAFile, f.Timeout, f.DNS, f.HTTP
	s.Limits, s.Policy, s.OwnerID, s.StateDir = f.Limits, f.Policy, f.OwnerID, f.StateDir
	s.Grace, s.MaxTTL, s.Guards, s.MetricsFile, s.Notify = f.Grace, f.MaxTTL, f.RunGuards, f.MetricsFile, f.Notify
	s.Catalog, s.Sinks = f.Catalog, f.Sinks
	for _, name := range slices.Sorted(maps.Keys(f.Catalog)) {
		// A set's own limits apply over its presets' defaults.
		base, preset := presetLimits(f.Catalog[name], f.Limits)
		o := f.Catalog[name].Limits
		if o == nil && !preset {
			continue
		}
		if s.Limits.Sets == nil {
			s.Limits.Sets = map[string]plan.Limits{}
		}
		if o != nil {
			base = o.Over(base)
		}
		s.Limits.Sets[name] = base
	}
	s.SelfMark = f.SelfMark
	s.ConfigFile = f.Path
	return s
}

// Validate checks everything that does not need the network.
func (s Settings) Validate() error {
	if !slices.Contains(Regions, s.Region) {
		return fmt.Errorf("region %q: want one of %s", s.Region, strings.Join(Regions, ", "))
	}
	if err := httplist.CheckURL(s.ListsURL); err != nil {
		return fmt.Errorf("pagerduty lists: %w", err)
	}
	if s.SelfMark != "" {
		if _, err := selfmark.Parse(s.SelfMark); err != nil {
			return fmt.Errorf("config: %w", err)
		}
	}
	if s.WebhookIPsURL != "" {
		if err := httplist.CheckURL(s.WebhookIPsURL); err != nil {
			return fmt.Errorf("webhook ips: %w", err)
		}
	}
	if !plan.ValidOwnerID(s.OwnerID) {
		return fmt.Errorf("owner_id %q: want up to 64 letters, digits, '.', '_' or '-' (it is written into every marker)", s.OwnerID)
	}
	if _, ok := plan.Policies[s.Policy]; !ok {
		return fmt.Errorf("policy %q: want one of %s", s.Policy, strings.Join(plan.PolicyNames(), ", "))
	}
	if err := s.Limits.Validate(); err != nil {
		return fmt.Errorf("limits: %w", err)
	}
	for _, name := range slices.Sorted(maps.Keys(s.Limits.Sets)) {
		if err := s.Limits.Sets[name].Validate(); err != nil {
			return fmt.Errorf("catalog.%s.limits: %w", name, err)
		}
	}
	if s.Notify.RoutingKey != "" {
		if err := CheckNotifyURL(s.Notify.URL); err != nil {
			return fmt.Errorf("notify: %w", err)
		}
		if s.Notify.Timeout <= 0 {
			return fmt.Errorf("notify: timeout %s: must be positive", s.Notify.Timeout)
		}
	}
	// 0 is allowed: an address is kept for its TTL and no longer.
	if s.Grace < 0 {
		return fmt.Errorf("grace %s: must not be negative", s.Grace)
	}
	// A file decodes onto the defaults, so a zero here was written out.
	if s.DNS.Attempts < 1 || s.DNS.QueryTimeout <= 0 || s.DNS.MaxCNAMEDepth < 1 {
		return fmt.Errorf("dns: attempts %d, query_timeout %s, max_cname_depth %d: want each at least 1",
			s.DNS.Attempts, s.DNS.QueryTimeout, s.DNS.MaxCNAMEDepth)
	}
	if s.HTTP.Timeout <= 0 || s.HTTP.MaxRedirects < 1 || s.HTTP.MaxBytes < 1 {
		return fmt.Errorf("http: timeout %s, max_redirects %d, max_bytes %d: want each at least 1",
			s.HTTP.Timeout, s.HTTP.MaxRedirects, s.HTTP.MaxBytes)
	}
	// A cap that can be set to decades would not be a cap.
	if s.MaxTTL <= 0 || s.MaxTTL > MaxMaxTTL {
		return fmt.Errorf("max_ttl %s: want more than 0 and at most %s", s.MaxTTL, MaxMaxTTL)
	}
	if s.Timeout <= 0 {
		return fmt.Errorf("timeout %s: must be positive", s.Timeout)
	}
	return nil
}

// SelectedSets returns the sets this run manages, in catalog order then
// custom sets by name, each fully validated.
func (s Settings) SelectedSets() ([]SetSpec, error) {
	builtin, err := Catalog(s.Region, s.ListsURL)
	if err != nil {
		return nil, err
	}
	if s.WebhookIPsURL != "" {
		for i := range builtin {
			if builtin[i].Name == "webhooks" {
				builtin[i].URLs = append(builtin[i].URLs, s.WebhookIPsURL)
			}
		}
	}
	all := make(map[string]SetSpec, len(builtin)+len(s.Catalog))
	order := make([]string, 0, len(builtin)+len(s.Catalog))
	for _, b := range builtin {
		all[b.Name] = b
		order = append(order, b.Name)
	}
	custom := slices.Sorted(maps.Keys(s.Catalog))
	for _, name := range custom {
		o := s.Catalog[name]
		o.Name = name
		base, ok := all[name]
		if !ok {
			if o.Protocol == "" {
				o.Protocol = "tcp"
			}
			all[name] = o
			order = append(order, name)
			continue
		}
		all[name] = overlay(base, o)
	}
	want := s.Sets
	if len(want) == 0 {
		want = order
	}
	out := make([]SetSpec, 0, len(want))
	seen := map[string]bool{}
	for _, name := range order {
		if !slices.Contains(want, name) || seen[name] {
			continue
		}
		seen[name] = true
		spec := all[name]
		if n, ok := s.MinEntries["*"]; ok {
			spec.MinEntries = n
		}
		if n, ok := s.MinEntries[name]; ok {
			spec.MinEntries = n
		}
		if err := spec.Validate(); err != nil {
			return nil, err
		}
		// Shown as the plan writes them, whatever case the config used.
		spec.Direction, spec.Protocol = strings.ToLower(spec.Direction), strings.ToLower(spec.Protocol)
		out = append(out, spec)
	}
	for name := range s.MinEntries {
		if _, ok := all[name]; !ok && name != "*" {
			return nil, fmt.Errorf("min-entries: unknown set %q (known: %s)", name, strings.Join(order, ", "))
		}
	}
	for _, name := range want {
		if _, ok := all[name]; !ok {
			return nil, fmt.Errorf("unknown set %q (known: %s)", name, strings.Join(order, ", "))
		}
	}
	return out, nil
}

// overlay replaces each field the config sets on a built-in set.
func overlay(base, o SetSpec) SetSpec {
	if o.Direction != "" {
		base.Direction = o.Direction
	}
	if o.Protocol != "" {
		base.Protocol = o.Protocol
	}
	if len(o.Ports) > 0 {
		base.Ports = o.Ports
	}
	if o.DNS != nil {
		base.DNS = o.DNS
	}
	if o.URLs != nil {
		base.URLs = o.URLs
	}
	if o.Static != nil {
		base.Static = o.Static
	}
	if o.Sources != nil {
		base.Sources = o.Sources
	}
	if o.MinEntries > 0 {
		base.MinEntries = o.MinEntries
	}
	if o.Limits != nil {
		base.Limits = o.Limits
	}
	return base
}

// ParseMinEntries reads --min-entries values: "N" for every set or
// "set=N" for one.
func ParseMinEntries(vals []string) (map[string]int, error) {
	out := make(map[string]int, len(vals))
	for _, v := range vals {
		name, num, ok := strings.Cut(v, "=")
		if !ok {
			name, num = "*", v
		}
		n, err := strconv.Atoi(strings.TrimSpace(num))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("--min-entries %q: want N or SET=N with N >= 0", v)
		}
		out[strings.TrimSpace(name)] = n
	}
	return out, nil
}
