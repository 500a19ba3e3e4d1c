package cmdutil

import (
	"fmt"

	"github.com/spf13/pflag"

	"github.com/pdsafelist/pdsafelist/pkg/config"
	"github.com/pdsafelist/pdsafelist/pkg/plan"
)

// flagSettings is the one table of flags that override a setting. Only
// flags the user gave apply, so a flag beats the file and an unchanged
// flag's default never does. A command without the flag never sees it.
var flagSettings = map[string]func(s *config.Settings, fs *pflag.FlagSet) error{
	"region": func(s *config.Settings, fs *pflag.FlagSet) (err error) {
		s.Region, err = fs.GetString("region")
		return
	},
	"sets": func(s *config.Settings, fs *pflag.FlagSet) (err error) {
		s.Sets, err = fs.GetStringSlice("sets")
		return
	},
	"pagerduty-lists-url": func(s *config.Settings, fs *pflag.FlagSet) (err error) {
		s.ListsURL, err = fs.GetString("pagerduty-lists-url")
		return
	},
	"webhook-ips-url": func(s *config.Settings, fs *pflag.FlagSet) (err error) {
		s.WebhookIPsURL, err = fs.GetString("webhook-ips-url")
		return
	},
	"nameserver": func(s *config.Settings, fs *pflag.FlagSet) (err error) {
		s.Nameservers, err = fs.GetStringArray("nameserver")
		return
	},
	"ca-file": func(s *config.Settings, fs *pflag.FlagSet) (err error) {
		s.CAFile, err = fs.GetString("ca-file")
		return
	},
	"timeout": func(s *config.Settings, fs *pflag.FlagSet) (err error) {
		s.Timeout, err = fs.GetDuration("timeout")
		return
	},
	"policy": func(s *config.Settings, fs *pflag.FlagSet) (err error) {
		s.Policy, err = fs.GetString("policy")
		return
	},
	"state-dir": func(s *config.Settings, fs *pflag.FlagSet) (err error) {
		s.StateDir, err = fs.GetString("state-dir")
		return
	},
	"grace": func(s *config.Settings, fs *pflag.FlagSet) (err error) {
		s.Grace, err = fs.GetDuration("grace")
		return
	},
	"max-ttl": func(s *config.Settings, fs *pflag.FlagSet) (err error) {
		s.MaxTTL, err = fs.GetDuration("max-ttl")
		return
	},
	"metrics-file": func(s *config.Settings, fs *pflag.FlagSet) (err error) {
		s.MetricsFile, err = fs.GetString("metrics-file")
		return
	},
	"notify-routing-key": func(s *config.Settings, fs *pflag.FlagSet) (err error) {
		s.Notify.RoutingKey, err = fs.GetString("notify-routing-key")
		return
	},
	"notify-url": func(s *config.Settings, fs *pflag.FlagSet) (err error) {
		s.Notify.URL, err = fs.GetString("notify-url")
		return
	},
	"max-delete": func(s *config.Settings, fs *pflag.FlagSet) error {
		v, err := fs.GetString("max-delete")
		if err != nil {
			return err
		}
		if s.MaxDelete, err = plan.ParseMaxDelete(v); err != nil {
			return fmt.Errorf("--%w", err)
		}
		return nil
	},
	"min-entries": func(s *config.Settings, fs *pflag.FlagSet) error {
		v, err := fs.GetStringArray("min-entries")
		if err != nil {
			return err
		}
		s.MinEntries, err = config.ParseMinEntries(v)
		return err
	},
}

// applyFlags sets what each flag the user gave overrides.
func applyFlags(s *config.Settings, fs *pflag.FlagSet) error {
	if fs == nil {
		return nil
	}
	var err error
	fs.Visit(func(f *pflag.Flag) {
		if set, ok := flagSettings[f.Name]; ok && err == nil {
			err = set(s, fs)
		}
	})
	return err
}
