package cmdutil

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/spf13/pflag"

	"github.com/pdsafelist/pdsafelist/pkg/awsconfig"
	"github.com/pdsafelist/pdsafelist/pkg/config"
	"github.com/pdsafelist/pdsafelist/pkg/resolution"
	"github.com/pdsafelist/pdsafelist/pkg/selfmark"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/source"
	"github.com/pdsafelist/pdsafelist/pkg/source/dns"
	"github.com/pdsafelist/pdsafelist/pkg/source/httplist"
)

// GlobalOptions are the flags every command shares that are not settings
// (those are bound through SettingFlags).
type GlobalOptions struct {
	ConfigPath string
	LogFormat  string
	Verbose    int
	// Flags are the running command's flags, persistent ones included;
	// those the user set override the config file (see flagSettings).
	Flags *pflag.FlagSet
}

// Factory builds the clients commands need, lazily and once.
type Factory struct {
	IO       *IOStreams
	Global   *GlobalOptions
	Registry sink.Registry
	// SettingFlags are the flags that override settings.
	SettingFlags *SettingFlags
	// DefaultSink is opened when neither --sink nor the config names one.
	DefaultSink sink.Spec
	// SourceRegistry is every source type a set may name.
	SourceRegistry source.Registry
	Now            func() time.Time
	// ResolvConf is read when no nameserver is configured.
	ResolvConf string
	// Getenv reads the environment (PDSAFELIST_CONFIG); nil is os.Getenv.
	Getenv func(string) string
	// Sources replaces the real DNS and HTTP sources in tests.
	Sources func(config.Settings) (resolution.Builder, error)
	// AWS replaces the AWS config loader in tests.
	AWS sink.AWS

	once     sync.Once
	settings config.Settings
	err      error
	logger   *slog.Logger
	markOnce sync.Once
	marker   *selfmark.Marker
	// stdinBy names the flag that read standard input (ReadStdin).
	stdinBy string
}

// Env reads one environment variable through Getenv.
func (f *Factory) Env(name string) string {
	if f.Getenv == nil {
		return os.Getenv(name)
	}
	return f.Getenv(name)
}

// Settings returns defaults, then the config file, then changed flags,
// validated.
func (f *Factory) Settings() (config.Settings, error) {
	f.once.Do(func() { f.settings, f.err = f.loadSettings() })
	return f.settings, f.err
}

func (f *Factory) loadSettings() (config.Settings, error) {
	g := f.Global
	flag := ""
	if g.Flags != nil && g.Flags.Changed("config") {
		flag = g.ConfigPath
		if flag == "" {
			return config.Settings{}, fmt.Errorf("--config: empty path")
		}
	}
	path, explicit := config.Locate(flag, f.Env, func(p string) bool {
		_, err := os.Stat(p)
		return err == nil
	})
	var file *config.File
	var err error
	if path == Stdio {
		var data []byte
		if data, err = f.ReadStdin("--config -"); err != nil {
			return config.Settings{}, err
		}
		file, err = config.Parse("(stdin)", data)
		if err != nil {
			return config.Settings{}, err
		}
	} else if file, err = config.Load(path, explicit); err != nil {
		return config.Settings{}, err
	}
	if path != "" {
		f.Logger().Info("config file read", "path", path)
	} else {
		f.Logger().Debug("no config file; built-in defaults", "searched", []string{config.DefaultPath, config.SystemPath})
	}
	s := config.Defaults().Apply(file)
	f.SettingFlags.apply(&s, g.Flags)
	if err := s.Validate(); err != nil {
		return config.Settings{}, err
	}
	return s, nil
}

// Logger logs to stderr in the chosen format. Text logs stay quiet by
// default because the plan is already on stdout.
func (f *Factory) Logger() *slog.Logger {
	if f.logger != nil {
		return f.logger
	}
	level := slog.LevelWarn
	switch {
	case f.Global.Verbose >= 2:
		level = slog.LevelDebug
	case f.Global.Verbose == 1, f.Global.LogFormat == "json":
		// JSON logs feed collectors, which want the per-run summary line.
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if f.Global.LogFormat == "json" {
		f.logger = slog.New(slog.NewJSONHandler(f.IO.ErrOut, opts))
	} else {
		f.logger = slog.New(newTextHandler(f.IO.ErrOut, level))
	}
	return f.logger
}

// SourceBuilder builds every source of every selected set up front, so a
// bad source spec fails the command before anything is queried. Clients
// are made on first use: a run without DNS sources needs no nameserver.
func (f *Factory) SourceBuilder(s config.Settings) (resolution.Builder, error) {
	return f.sourceBuilder(s, nil)
}

// sourceBuilder is SourceBuilder with the lists' memory between runs
// (nil: none, every list fetched in full).
func (f *Factory) sourceBuilder(s config.Settings, fetches source.FetchMemory) (resolution.Builder, error) {
	if f.Sources != nil {
		return f.Sources(s)
	}
	now := f.Now
	if now == nil {
		now = time.Now
	}
	sets, err := s.SelectedSets()
	if err != nil {
		return nil, err
	}
	var client *http.Client
	var resolver *dns.Resolver
	env := source.Env{
		MaxBytes: s.HTTP.MaxBytes,
		Logger:   f.Logger(),
		Fetches:  fetches,
		Now:      now,
		// The sources are built for this run alone, so what they share
		// lives as long as the run.
		Shared: source.NewShared(),
		HTTPClient: func() (*http.Client, error) {
			if client == nil {
				c, err := httplist.NewClient(httplist.ClientOptions{CAFile: s.CAFile, Timeout: s.HTTP.Timeout, MaxRedirects: s.HTTP.MaxRedirects,
					Control: f.SelfMarker(s).Control})
				if err != nil {
					return nil, err
				}
				client = c
			}
			return client, nil
		},
		Resolver: func() (source.NameResolver, error) {
			if resolver == nil {
				servers, err := f.nameservers(s)
				if err != nil {
					return nil, err
				}
				resolver = dns.New(dns.Config{Nameservers: servers, Attempts: s.DNS.Attempts, QueryTimeout: s.DNS.QueryTimeout, MaxCNAMEDepth: s.DNS.MaxCNAMEDepth,
					Control: f.SelfMarker(s).Control, Logger: f.Logger()})
			}
			return resolver, nil
		},
	}
	built := make(map[string][]source.Source, len(sets))
	for _, spec := range sets {
		active, expired := spec.ActiveSourceSpecs(now())
		for _, ss := range expired {
			f.Logger().Info("source dropped: its until date has come", "set", spec.Name, "source", ss.Origin, "until", ss.Until.Format(time.RFC3339))
		}
		for _, ss := range active {
			src, err := f.SourceRegistry.Build(ss, env)
			if err != nil {
				return nil, err
			}
			built[spec.Name] = append(built[spec.Name], src)
		}
	}
	return func(spec config.SetSpec) []source.Source { return built[spec.Name] }, nil
}

func (f *Factory) nameservers(s config.Settings) ([]string, error) {
	if len(s.Nameservers) == 0 {
		path := f.ResolvConf
		if path == "" {
			path = "/etc/resolv.conf"
		}
		servers, err := dns.NameserversFromResolvConf(path)
		if err != nil {
			return nil, fmt.Errorf("nameservers: %w (use --nameserver)", err)
		}
		return servers, nil
	}
	out := make([]string, 0, len(s.Nameservers))
	for _, n := range s.Nameservers {
		ns, err := dns.NormalizeNameserver(n)
		if err != nil {
			return nil, fmt.Errorf("nameserver: %w", err)
		}
		out = append(out, ns)
	}
	return out, nil
}

// SinkEnv is what sinks receive from the factory. ctx is the command's:
// it bounds loading AWS configs, not the sinks' later calls.
func (f *Factory) SinkEnv(ctx context.Context, s config.Settings) sink.Env {
	return sink.Env{Logger: f.Logger(), OwnerID: s.OwnerID, Now: f.Now, SelfMark: f.SelfMarker(s), AWS: f.awsLoader(ctx, s), StateDir: s.StateDir}
}

// awsLoader is where every AWS client's config comes from: the command's
// context, --ca-file (AWS_CA_BUNDLE on top), the self mark and the call
// log; the target's region, profile and role come from each sink.
func (f *Factory) awsLoader(ctx context.Context, s config.Settings) sink.AWS {
	if f.AWS != nil {
		return f.AWS
	}
	return &awsconfig.Loader{Context: ctx, CAFile: s.CAFile, Control: f.SelfMarker(s).Control, Logger: f.Logger()}
}

// NotifyClient is the HTTP client of notifications: the same verified
// TLS, --ca-file and self mark as the lists, since a proxy that re-signs
// traffic must be trusted for both or neither.
func (f *Factory) NotifyClient(s config.Settings) (*http.Client, error) {
	return httplist.NewClient(httplist.ClientOptions{CAFile: s.CAFile, Timeout: NotifyTimeout, Control: f.SelfMarker(s).Control})
}

// NotifyTimeout bounds one notification request.
const NotifyTimeout = 10 * time.Second

// SelfMarker marks the tool's own sockets. The default mark is turned on
// by a sink that enforces egress; a self_mark set in the config is on
// from the start, and "0" never is.
func (f *Factory) SelfMarker(s config.Settings) *selfmark.Marker {
	f.markOnce.Do(func() {
		m := selfmark.Default
		if s.SelfMark != "" {
			m, _ = selfmark.Parse(s.SelfMark) // checked by Validate
		}
		f.marker = selfmark.New(m)
		f.marker.Warn = func(err error) { f.Logger().Warn(err.Error()) }
		if s.SelfMark != "" {
			f.marker.Enable()
		}
	})
	return f.marker
}
