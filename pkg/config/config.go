// Package config loads pdsafelist.yaml and layers it over the built-in
// PagerDuty catalog. Flags are layered on top by the commands.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"net/url"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/pdsafelist/pdsafelist/pkg/config/yamlcheck"
	"github.com/pdsafelist/pdsafelist/pkg/oneline"
	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/regularfile"
	"github.com/pdsafelist/pdsafelist/pkg/source/httplist"
)

// DefaultPath is read when --config is not given and the file exists.
const DefaultPath = "pdsafelist.yaml"

// SystemPath is read after DefaultPath, like most daemons' /etc config.
const SystemPath = "/etc/pdsafelist/pdsafelist.yaml"

// EnvVar names a config file when --config is not given.
const EnvVar = "PDSAFELIST_CONFIG"

// Locate picks the config file: --config, else $PDSAFELIST_CONFIG, else
// ./pdsafelist.yaml, else /etc/pdsafelist/pdsafelist.yaml. A file named by
// the flag or the variable must exist; the others are used when present.
// An empty path means no file: built-in defaults only.
func Locate(flag string, getenv func(string) string, exists func(string) bool) (path string, explicit bool) {
	switch {
	case flag != "":
		return flag, true
	case getenv(EnvVar) != "":
		return getenv(EnvVar), true
	}
	for _, p := range []string{DefaultPath, SystemPath} {
		if exists(p) {
			return p, false
		}
	}
	return "", false
}

// File is the on-disk configuration. Zero values mean "use the default".
type File struct {
	Region            string        `yaml:"region"`
	Sets              []string      `yaml:"sets"`
	PagerDutyListsURL string        `yaml:"pagerduty_lists_url"`
	WebhookIPsURL     string        `yaml:"webhook_ips_url"`
	Nameservers       []string      `yaml:"nameservers"`
	CAFile            string        `yaml:"ca_file"`
	Timeout           time.Duration `yaml:"timeout"`
	DNS               DNS           `yaml:"dns"`
	HTTP              HTTP          `yaml:"http"`
	Limits            plan.Limits   `yaml:"limits"`
	Policy            string        `yaml:"policy"`
	OwnerID           string        `yaml:"owner_id"`
	StateDir          string        `yaml:"state_dir"`
	Grace             time.Duration `yaml:"grace"`
	MaxTTL            time.Duration `yaml:"max_ttl"`
	plan.RunGuards    `yaml:",inline"`
	MetricsFile       string             `yaml:"metrics_file"`
	SelfMark          string             `yaml:"self_mark"`
	Notify            Notify             `yaml:"notify"`
	Catalog           map[string]SetSpec `yaml:"catalog"`
	Sinks             []yaml.Node        `yaml:"sinks"`
	// Path is the file the config was read from, for error messages.
	Path string `yaml:"-"`
}

// DNS tunes the resolver.
type DNS struct {
	Attempts      int           `yaml:"attempts"`
	QueryTimeout  time.Duration `yaml:"query_timeout"`
	MaxCNAMEDepth int           `yaml:"max_cname_depth"`
}

// Notify sends PagerDuty events about the tool's own health.
type Notify struct {
	RoutingKey string `yaml:"routing_key"`
	URL        string `yaml:"url"`
	// Timeout bounds all of one run's notifications together, retries
	// included: a silent Events API must not hold the lock.
	Timeout time.Duration `yaml:"timeout"`
}

// HTTP tunes list fetching.
type HTTP struct {
	Timeout      time.Duration `yaml:"timeout"`
	MaxRedirects int           `yaml:"max_redirects"`
	MaxBytes     int64         `yaml:"max_bytes"`
}

// Load reads a config file. A missing file at the default path is not an
// error; a missing file the user named is.
func Load(path string, explicit bool) (*File, error) {
	if path == "" {
		return defaultFile(), nil
	}
	data, err := regularfile.ReadFile(path)
	if err != nil {
		if !explicit && errors.Is(err, fs.ErrNotExist) {
			return defaultFile(), nil
		}
		// The path is named once; keep only the reason.
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return Parse(path, data)
}

// Parse decodes a config strictly: an unknown key is a mistake worth
// stopping for, not something to silently ignore. It decodes onto the
// defaults, so a key the file leaves out keeps its default and a key it
// sets, even to zero, keeps the file's value.
func Parse(name string, data []byte) (*File, error) {
	f := *defaultFile()
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("config %s: %s", name, oneline.Error(err))
	}
	// Decoding the node itself (not a re-marshalled copy) keeps the file's
	// line numbers, and yamlcheck words mistakes in the user's terms.
	if err := yamlcheck.Decode(&doc, &f, name); err != nil {
		return nil, fmt.Errorf("config %w", err)
	}
	f.Path = name
	for k, s := range f.Catalog {
		s.Name = k
		for i := range s.Sources {
			s.Sources[i].File = name
		}
		f.Catalog[k] = s
	}
	return &f, nil
}

// CheckNotifyURL allows plain HTTP only on loopback, where tests and local
// relays listen: anywhere else the routing key would travel in clear text.
func CheckNotifyURL(raw string) error {
	u, err := url.Parse(raw)
	if err == nil && u.Scheme == "http" {
		if a, err := netip.ParseAddr(u.Hostname()); err == nil && a.Unmap().IsLoopback() || u.Hostname() == "localhost" {
			return nil
		}
		return fmt.Errorf("url %q: want an https:// URL (http only to a loopback address): the routing key would travel in clear text", raw)
	}
	return httplist.CheckURL(raw)
}
