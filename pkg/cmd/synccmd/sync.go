// Package sync is the command that plans and applies the desired sets to
// every sink.
package synccmd

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/leaderelection"

	"github.com/pdsafelist/pdsafelist/pkg/clock"
	"github.com/pdsafelist/pdsafelist/pkg/cmdutil"
	"github.com/pdsafelist/pdsafelist/pkg/config"
	"github.com/pdsafelist/pdsafelist/pkg/controller"
	"github.com/pdsafelist/pdsafelist/pkg/leader"
	"github.com/pdsafelist/pdsafelist/pkg/notify"
	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/render"
	"github.com/pdsafelist/pdsafelist/pkg/resolution"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/state"
)

// Options are the sync command's flags.
type Options struct {
	IO               *cmdutil.IOStreams
	Factory          *cmdutil.Factory
	DryRun           bool
	Output           string
	Quiet            bool
	DetailedExitcode bool
	Sinks            []string
	Parallelism      int

	Force       bool
	PlanOut     string
	PlanFile    string
	PlanKeyFile string
	WaitLock    time.Duration
	Jitter      time.Duration
	Interval    time.Duration
	RunTimeout  time.Duration
	// Cluster runs the loop on a Kubernetes cluster: leader election,
	// state in a ConfigMap, probes.
	Cluster Cluster

	// Sleep waits or returns early with ctx's error; Rand picks jitter.
	// Tests replace both.
	Sleep func(ctx context.Context, d time.Duration) error
	Rand  func(n int64) int64
}

// NewCmdSync builds the command; tests run it through the root command.
func NewCmdSync(f *cmdutil.Factory) *cobra.Command {
	opts := &Options{IO: f.IO, Factory: f, Sleep: clock.Sleep, Rand: rand.Int64N}
	cmd := &cobra.Command{
		Use:   "sync",
		Short: "Plan and apply the desired sets to every sink",
		Long: `Sync resolves the selected sets, reads what each sink holds, and applies the
difference: adds first, then removes. Only entries pdsafelist created are
ever removed, and a set whose sources failed is left exactly as it is.

Sinks come from --sink (repeatable), else from the config file, else a
single nftables file ./pdsafelist.nft. Sink specs:
` + sinkHelp(f.Registry) + `

` + cmdutil.SourceHelp(f.SourceRegistry) + `

Exit codes: 0 no changes or applied, 1 error (including a failed source),
2 changes present (only with --detailed-exitcode), 3 refused by a safety
guard, 4 another run holds the lock.`,
		Example: `  pdsafelist sync --dry-run
  pdsafelist sync --sink nftables:/etc/nftables.d/pagerduty.nft
  pdsafelist sync --dry-run --detailed-exitcode -o json     # CI drift check
  pdsafelist sync --plan-out plan.json && pdsafelist sync --plan plan.json
  pdsafelist sync --interval 5m --jitter 30s                # long-running
  pdsafelist sync --interval 5m --leader-elect pdsafelist/pdsafelist --state-configmap pdsafelist/pdsafelist-state   # replicas on Kubernetes
  pdsafelist sync --sink 'template:/etc/nginx/pagerduty-webhooks.conf?format=nginx&sets=webhooks&check=nginx+-t+-q&reload=nginx+-s+reload'
  pdsafelist sync --sink 'aws-wafv2-ipset:pagerduty-webhooks?region=eu-west-1&sets=webhooks'
  pdsafelist sync --config docs/sources.example.yaml --sets github_hooks --dry-run`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.Output != "text" && opts.Output != "json" {
				return fmt.Errorf("--output %q: want text or json", opts.Output)
			}
			if opts.Parallelism < 1 {
				return fmt.Errorf("--parallelism %d: want at least 1", opts.Parallelism)
			}
			if opts.PlanFile != "" && (opts.PlanOut != "" || opts.DryRun || opts.Interval > 0) {
				return fmt.Errorf("--plan applies a saved plan; it cannot be combined with --plan-out, --dry-run or --interval")
			}
			if opts.Interval < 0 || opts.Jitter < 0 || opts.WaitLock < 0 {
				return fmt.Errorf("--interval, --jitter and --wait-lock must not be negative")
			}
			if opts.RunTimeout <= 0 {
				return fmt.Errorf("--run-timeout %s: want a positive duration", opts.RunTimeout)
			}
			if opts.Interval > 0 && opts.PlanOut != "" {
				return fmt.Errorf("--plan-out saves one plan; it cannot be combined with --interval")
			}
			if err := opts.Cluster.check(opts); err != nil {
				return err
			}
			if opts.PlanOut == cmdutil.Stdio && opts.Output == "json" {
				return fmt.Errorf("--plan-out - writes the plan to standard output; -o json would write a second document there")
			}
			return Run(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&opts.DryRun, "dry-run", false, "print the plan without applying it")
	fl.StringVarP(&opts.Output, "output", "o", "text", "output format: text or json")
	fl.BoolVarP(&opts.Quiet, "quiet", "q", false, "print no plan text on stdout (with -o json the document is still printed); errors and logs go to stderr as usual")
	fl.BoolVar(&opts.DetailedExitcode, "detailed-exitcode", false, "exit 2 when the plan has changes (dry run or applied)")
	fl.StringArrayVar(&opts.Sinks, "sink", nil, "sink `SPEC` TYPE[:ARG][?key=value&sets=a,b] (repeatable)")
	sf := f.SettingFlags
	cmdutil.Bind(sf, "policy", func(s *config.Settings) *string { return &s.Policy }, fl.StringVar, "change policy: "+strings.Join(plan.PolicyNames(), ", "))
	fl.IntVar(&opts.Parallelism, "parallelism", 4, "sinks planned and applied at once")
	cmdutil.Bind(sf, "state-dir", func(s *config.Settings) *string { return &s.StateDir }, fl.StringVar, "`DIR` for the state file and lock (default /var/lib/pdsafelist as root, else $XDG_STATE_HOME/pdsafelist)")
	cmdutil.Bind(sf, "grace", func(s *config.Settings) *time.Duration { return &s.Grace }, fl.DurationVar, "keep an address that left an answer for max(its TTL, this)")
	cmdutil.Bind(sf, "max-ttl", func(s *config.Settings) *time.Duration { return &s.MaxTTL }, fl.DurationVar, "cap the TTL that retention honours (at most 168h)")
	// The run-level guards: one flag each, bound to config.Settings.
	cmdutil.Bind(sf, "max-delete", func(s *config.Settings) *plan.MaxDelete { return &s.Guards.MaxDelete }, cmdutil.Value[plan.MaxDelete](fl), "refuse a plan that stops allowing more of a sink's entries than this share (from 10 entries) or count (0: none)")
	cmdutil.Bind(sf, "min-entries", func(s *config.Settings) *map[string]int { return &s.MinEntries }, func(p *map[string]int, name string, _ map[string]int, usage string) {
		fl.Var((*cmdutil.MinEntries)(p), name, usage)
	}, "freeze a set resolving to fewer prefixes: `N` for all sets or SET=N (repeatable)")
	fl.BoolVar(&opts.Force, "force", false, "apply even when the max-delete guard refuses")
	fl.StringVar(&opts.PlanOut, "plan-out", "", "save the plan to `FILE` (- for standard output; the plan text then goes to stderr) without applying it")
	fl.StringVar(&opts.PlanFile, "plan", "", "apply exactly the plan saved in `FILE` (- for standard input) to the sinks of this run's config and --sink flags; refused unless its code verifies with the plan key, it was made for exactly these sinks, no sink changed since, and it asks for nothing a live run would not do")
	fl.StringVar(&opts.PlanKeyFile, "plan-key-file", "", "`FILE` holding the key that signs (--plan-out) and verifies (--plan) saved plans, at least 32 bytes, mode 0600 (default $"+PlanKeyEnv+", else plan.key in the state directory, made on first use)")
	fl.DurationVar(&opts.WaitLock, "wait-lock", 0, "wait this long for another run's lock instead of exiting at once")
	fl.DurationVar(&opts.Jitter, "jitter", 0, "sleep a random time up to this before each run")
	fl.DurationVar(&opts.Interval, "interval", 0, "run again every `DURATION` until SIGTERM or SIGINT")
	fl.DurationVar(&opts.RunTimeout, "run-timeout", 10*time.Minute, "deadline for reading and applying every sink in one run")
	fl.StringVar(&opts.Cluster.LeaderElect, "leader-elect", "", "with --interval, run only while holding the coordination.k8s.io Lease `NAMESPACE/NAME`; replicas wait, and one takes over within the lease duration when the holder dies")
	fl.DurationVar(&opts.Cluster.LeaseDuration, "leader-elect-lease-duration", leader.DefaultLeaseDuration, "how long an unrenewed Lease blocks the other replicas")
	fl.DurationVar(&opts.Cluster.RenewDeadline, "leader-elect-renew-deadline", leader.DefaultRenewDeadline, "how long the holder tries to renew before it stops syncing")
	fl.DurationVar(&opts.Cluster.RetryPeriod, "leader-elect-retry-period", leader.DefaultRetryPeriod, "time between tries to take or renew the Lease")
	fl.StringVar(&opts.Cluster.StateConfigMap, "state-configmap", "", "keep the retention state in the ConfigMap `NAMESPACE/NAME` (created, labelled managed-by pdsafelist, written only over the version read) instead of the state directory")
	fl.StringVar(&opts.Cluster.Kubeconfig, "kubeconfig", "", "kubeconfig `FILE` for --leader-elect and --state-configmap (default as kubectl: $KUBECONFIG, ~/.kube/config, else the pod's service account)")
	fl.StringVar(&opts.Cluster.Context, "context", "", "kubeconfig context for --leader-elect and --state-configmap")
	fl.StringVar(&opts.Cluster.HealthAddr, "health-addr", "", "with --interval, serve /healthz and /readyz for probes on `ADDR` (host:port)")
	cmdutil.Bind(sf, "metrics-file", func(s *config.Settings) *string { return &s.MetricsFile }, fl.StringVar, "write a Prometheus textfile to `PATH` after each run")
	cmdutil.Bind(sf, "notify-routing-key", func(s *config.Settings) *string { return &s.Notify.RoutingKey }, fl.StringVar, fmt.Sprintf("send PagerDuty Events API v2 alerts about this tool with `KEY`; a run's notifications together get notify.timeout (%s), and a failed one never fails the sync", config.Defaults().Notify.Timeout))
	cmdutil.Bind(sf, "notify-url", func(s *config.Settings) *string { return &s.Notify.URL }, fl.StringVar, "Events API `URL`: https, or http to a loopback address only, so the routing key never travels in clear text")
	_ = cmd.RegisterFlagCompletionFunc("policy", cmdutil.CompletePolicy())
	_ = cmd.RegisterFlagCompletionFunc("output", cmdutil.CompleteValues("text", "json"))
	_ = cmd.RegisterFlagCompletionFunc("sink", f.CompleteSinkTypes())
	return cmd
}

func sinkHelp(r sink.Registry) string {
	var b strings.Builder
	for _, t := range r.Types() {
		fmt.Fprintf(&b, "  %s\n", r[t].Help)
	}
	return strings.TrimRight(b.String(), "\n")
}

// settings layers this command's flags over the shared settings.
func (opts *Options) settings() (config.Settings, error) {
	s, err := opts.Factory.Settings()
	if err != nil {
		return s, err
	}
	// The factory applied the flags the user gave, sync's included.
	if s.StateDir == "" {
		s.StateDir = state.DefaultDir(os.Geteuid(), os.Getenv)
	}
	if err := s.Validate(); err != nil {
		return s, err
	}
	if _, err := s.SelectedSets(); err != nil {
		return s, err
	}
	return s, nil
}

// Run runs once, or in a loop with --interval.
func Run(ctx context.Context, opts *Options) error {
	if opts.Interval > 0 {
		return loop(ctx, opts)
	}
	if d := opts.jitter(); d > 0 {
		opts.Factory.Logger().Info("waiting before the run (--jitter)", "for", d.Round(time.Millisecond).String())
		if err := opts.Sleep(ctx, d); err != nil {
			return err
		}
	}
	// A single run ends within clock.StopGrace of the first signal, whatever
	// it waits on: the process then exits, which ends what was left behind
	// and releases the lock. The loop hands its runs no signal.
	err, ok := clock.Await(ctx, func() error { return runOnce(ctx, opts) })
	if !ok {
		return context.Cause(ctx)
	}
	return err
}

func (opts *Options) jitter() time.Duration {
	if opts.Jitter <= 0 {
		return 0
	}
	return time.Duration(opts.Rand(int64(opts.Jitter)))
}

// loop runs until ctx ends. A signal never interrupts a run half way: it
// ends the wait between runs, so every apply completes. With
// --leader-elect it runs only while this replica holds the Lease, and
// losing the Lease does end a run at once: another replica may take over
// once the Lease expires, and two writers must never meet.
func loop(ctx context.Context, opts *Options) error {
	s, err := opts.settings()
	if err != nil {
		return err
	}
	if _, err := openSinks(ctx, opts, s); err != nil {
		return err
	}
	log := opts.Factory.Logger()
	c := &opts.Cluster
	health := leaderelection.NewLeaderHealthzAdaptor(c.LeaseDuration)
	if c.HealthAddr != "" {
		if err := c.serveHealth(ctx, opts, health); err != nil {
			return err
		}
	}
	if c.LeaderElect == "" {
		runLoop(ctx, context.WithoutCancel(ctx), opts)
	} else if err := c.elect(ctx, opts, health, func(lease context.Context) {
		// Waits end with the signal or the Lease; runs only with the Lease.
		wait, stop := context.WithCancel(ctx)
		defer stop()
		context.AfterFunc(lease, stop)
		runLoop(wait, lease, opts)
	}); err != nil {
		return err
	}
	log.Info("stopping: signal received between runs")
	return nil
}

// runLoop runs every interval until wait ends; each run gets run's
// context.
func runLoop(wait, run context.Context, opts *Options) {
	log := opts.Factory.Logger()
	for {
		if err := opts.Sleep(wait, opts.jitter()); err != nil {
			return
		}
		err := runOnce(run, opts)
		code := cmdutil.ExitCode(err)
		if err != nil && code != cmdutil.ExitChanges {
			log.Error("run failed; retrying at the next interval", "err", err.Error(), "exit_code", code)
		}
		if err := opts.Sleep(wait, opts.Interval); err != nil {
			return
		}
	}
}

// controller builds the run cycle for targets with the settings and this
// command's flags; printing, the lock and the loop stay here.
func (opts *Options) controller(s config.Settings, targets []controller.Target) *controller.Controller {
	f := opts.Factory
	return &controller.Controller{
		Targets: targets, Defined: definedSets(s), Policy: s.Policy, Limits: s.Limits,
		Guards: s.Guards, Force: opts.Force, Retention: state.Window{Grace: s.Grace, MaxTTL: s.MaxTTL},
		Parallelism: opts.Parallelism, RunTimeout: opts.RunTimeout, DetailedExitcode: opts.DetailedExitcode,
		StatePath: filepath.Join(s.StateDir, state.FileName), Store: opts.Cluster.store(), Now: f.Now,
		Warn: func(msg string) {
			f.Logger().Warn(msg)
		},
		Log:     f.Logger(),
		Alerts:  opts.alerts(s),
		Summary: opts.summary(s),
	}
}

// alerts builds the run's notifier from the settings and the factory's
// client; nil when no routing key is set or no client can be had.
func (opts *Options) alerts(s config.Settings) *controller.Alerts {
	if s.Notify.RoutingKey == "" {
		return nil
	}
	f := opts.Factory
	client, err := f.NotifyClient(s)
	if err != nil {
		f.Logger().Warn("notifications not sent", "err", err.Error())
		return nil
	}
	host, _ := os.Hostname()
	prefix := "pdsafelist"
	if s.OwnerID != "" {
		prefix += ":" + s.OwnerID
	}
	return &controller.Alerts{Notifier: &notify.Notifier{URL: s.Notify.URL, RoutingKey: s.Notify.RoutingKey, Source: host, DedupPrefix: prefix, Client: client},
		Timeout: s.Notify.Timeout, Now: f.Now, Log: f.Logger()}
}

// summary ends every run: the metrics file and the summary log line.
func (opts *Options) summary(s config.Settings) *controller.Summary {
	return &controller.Summary{MetricsFile: s.MetricsFile, ExitCode: cmdutil.ExitCode, Log: opts.Factory.Logger()}
}

// definedSets is every set the config defines, selected or not, so the
// plan can tell a set merely not selected this run from a retired one. A
// set that does not validate is defined but has no spec.
func definedSets(s config.Settings) map[string]*plan.DesiredSet {
	names := map[string]bool{}
	for name := range s.Catalog {
		names[name] = true
	}
	if builtin, err := config.Catalog(s.Region, s.ListsURL); err == nil {
		for _, b := range builtin {
			names[b.Name] = true
		}
	}
	out := make(map[string]*plan.DesiredSet, len(names))
	for name := range names {
		one := s
		one.Sets, one.MinEntries = []string{name}, nil
		if specs, err := one.SelectedSets(); err == nil && len(specs) == 1 {
			d := specs[0].Desired()
			out[name] = &d
		} else {
			out[name] = nil
		}
	}
	return out
}

func runOnce(ctx context.Context, opts *Options) error {
	f := opts.Factory
	s, err := opts.settings()
	if err != nil {
		return err
	}
	// Before anything is opened: every run reads the state, a dry run too.
	if err := state.CheckDir(s.StateDir, os.Geteuid()); err != nil {
		return err
	}
	if opts.PlanFile != "" {
		return applySaved(ctx, opts, s)
	}
	dryRun := opts.DryRun || opts.PlanOut != ""
	targets, err := openSinks(ctx, opts, s)
	if err != nil {
		return err
	}
	if !dryRun {
		unlock, err := state.Lock(ctx, opts.Factory.Logger(), s.StateDir, opts.WaitLock)
		if err != nil {
			return err
		}
		defer unlock()
	}
	fetches := loadFetches(f, s, dryRun)
	live := controller.Live{DryRun: dryRun, Resolve: func(ctx context.Context) ([]resolution.SetResult, error) {
		return f.ResolveSetsRemembering(ctx, s, fetches)
	}, SourceLists: opts.Output == "json"}
	if opts.PlanOut != "" {
		// The key first: a plan that could not be signed is not worth making.
		key, err := opts.planKey(s, true)
		if err != nil {
			return err
		}
		live.Planned = func(r *controller.Run) error {
			return savePlan(opts.IO.Out, opts.PlanOut, key, f.Now(), s.Policy, targets, r)
		}
	}
	r, err := opts.controller(s, targets).RunOnce(ctx, live)
	if r == nil {
		return err
	}
	if !dryRun {
		if err := fetches.Save(state.FetchPath(s.StateDir), f.Now()); err != nil {
			r.Err = errors.Join(r.Err, err)
		}
	}
	if err := printReport(opts, r.Report); err != nil {
		return err
	}
	return r.Err
}

func printReport(opts *Options, report controller.Report) error {
	if opts.Output == "json" {
		return render.SyncJSON(opts.IO.Out, report)
	}
	if opts.Quiet {
		return nil
	}
	out := opts.IO.Out
	if opts.PlanOut == cmdutil.Stdio {
		// Standard output carries the saved plan; people read stderr.
		out = opts.IO.ErrOut
	}
	return render.SyncText(out, report)
}

func openSinks(ctx context.Context, opts *Options, s config.Settings) ([]controller.Target, error) {
	specs, err := opts.sinkSpecs(s)
	if err != nil {
		return nil, err
	}
	sets, err := s.SelectedSets()
	if err != nil {
		return nil, err
	}
	return open(ctx, opts.Factory, s, specs, sets)
}

// sinkSpecs are the sinks of this run: --sink, else the config file's,
// else a single nftables file.
func (opts *Options) sinkSpecs(s config.Settings) ([]sink.Spec, error) {
	return opts.Factory.SinkSpecs(opts.Sinks, s)
}

// open opens the sinks; with sets given, every set a spec routes must be
// one of them.
func open(ctx context.Context, f *cmdutil.Factory, s config.Settings, specs []sink.Spec, sets []config.SetSpec) ([]controller.Target, error) {
	return f.OpenSinks(ctx, s, specs, sets)
}

// loadFetches reads what the published lists answered last; a corrupt
// file is set aside (not on a dry run) and every list is asked in full.
func loadFetches(f *cmdutil.Factory, s config.Settings, dryRun bool) *state.Fetches {
	fetches, err := state.LoadFetches(state.FetchPath(s.StateDir))
	var corrupt *state.CorruptError
	if errors.As(err, &corrupt) {
		if !dryRun {
			if aerr := corrupt.SetAside(f.Now()); aerr != nil {
				f.Logger().Warn(aerr.Error())
			}
		}
		f.Logger().Warn(corrupt.Error())
	}
	return fetches
}
