// Package sync is the command that plans and applies the desired sets to
// every sink.
package sync

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	gosync "sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/pdsafelist/pdsafelist/pkg/cmd/resolve"
	"github.com/pdsafelist/pdsafelist/pkg/cmdutil"
	"github.com/pdsafelist/pdsafelist/pkg/config"
	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/render"
	rs "github.com/pdsafelist/pdsafelist/pkg/resolve"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/sink/nftables"
	"github.com/pdsafelist/pdsafelist/pkg/state"
)

// Options are the sync command's flags.
type Options struct {
	IO               *cmdutil.IOStreams
	Factory          *cmdutil.Factory
	DryRun           bool
	Output           string
	DetailedExitcode bool
	Sinks            []string
	Policy           string
	Parallelism      int

	StateDir    string
	Grace       time.Duration
	MaxTTL      time.Duration
	MaxDelete   string
	Force       bool
	MinEntries  []string
	PlanOut     string
	PlanFile    string
	WaitLock    time.Duration
	Jitter      time.Duration
	Interval    time.Duration
	RunTimeout  time.Duration
	MetricsFile string
	NotifyKey   string
	NotifyURL   string

	// Changed reports which flags were given, so they beat the config.
	Changed func(name string) bool
	// Sleep waits or returns early with ctx's error; Rand picks jitter.
	// Tests replace both.
	Sleep func(ctx context.Context, d time.Duration) error
	Rand  func(n int64) int64
}

// NewCmdSync builds the command; runF replaces the run in tests.
func NewCmdSync(f *cmdutil.Factory, runF func(context.Context, *Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, Factory: f, Sleep: sleep, Rand: rand.Int64N}
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
  pdsafelist sync --interval 5m --jitter 30s                # long-running`,
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
			opts.Changed = cmd.Flags().Changed
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return Run(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&opts.DryRun, "dry-run", false, "print the plan without applying it")
	fl.StringVarP(&opts.Output, "output", "o", "text", "output format: text or json")
	fl.BoolVar(&opts.DetailedExitcode, "detailed-exitcode", false, "exit 2 when the plan has changes (dry run or applied)")
	fl.StringArrayVar(&opts.Sinks, "sink", nil, "sink `SPEC` TYPE[:ARG][?key=value&sets=a,b] (repeatable)")
	fl.StringVar(&opts.Policy, "policy", "sync", "change policy: "+strings.Join(plan.PolicyNames(), ", "))
	fl.IntVar(&opts.Parallelism, "parallelism", 4, "sinks planned and applied at once")
	fl.StringVar(&opts.StateDir, "state-dir", "", "`DIR` for the state file and lock (default /var/lib/pdsafelist as root, else $XDG_STATE_HOME/pdsafelist)")
	fl.DurationVar(&opts.Grace, "grace", time.Hour, "keep an address that left an answer for max(its TTL, this)")
	fl.DurationVar(&opts.MaxTTL, "max-ttl", state.DefaultMaxTTL, "cap the TTL that retention honours (at most 168h)")
	fl.StringVar(&opts.MaxDelete, "max-delete", "30%", "refuse a plan that stops allowing more of a sink's entries than this share (from 10 entries) or count (0: none)")
	fl.BoolVar(&opts.Force, "force", false, "apply even when the max-delete guard refuses")
	fl.StringArrayVar(&opts.MinEntries, "min-entries", nil, "freeze a set resolving to fewer prefixes: `N` for all sets or SET=N (repeatable)")
	fl.StringVar(&opts.PlanOut, "plan-out", "", "save the plan to `FILE` without applying it")
	fl.StringVar(&opts.PlanFile, "plan", "", "apply exactly the plan saved in `FILE`; refused if a sink changed since")
	fl.DurationVar(&opts.WaitLock, "wait-lock", 0, "wait this long for another run's lock instead of exiting at once")
	fl.DurationVar(&opts.Jitter, "jitter", 0, "sleep a random time up to this before each run")
	fl.DurationVar(&opts.Interval, "interval", 0, "run again every `DURATION` until SIGTERM or SIGINT")
	fl.DurationVar(&opts.RunTimeout, "run-timeout", 10*time.Minute, "deadline for reading and applying every sink in one run")
	fl.StringVar(&opts.MetricsFile, "metrics-file", "", "write a Prometheus textfile to `PATH` after each run")
	fl.StringVar(&opts.NotifyKey, "notify-routing-key", "", "send PagerDuty Events API v2 alerts about this tool with `KEY`")
	fl.StringVar(&opts.NotifyURL, "notify-url", config.DefaultEventsURL, "Events API `URL`")
	return cmd
}

func sinkHelp(r sink.Registry) string {
	var b strings.Builder
	for _, t := range r.Types() {
		fmt.Fprintf(&b, "  %s\n", r[t].Help)
	}
	return strings.TrimRight(b.String(), "\n")
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// settings layers this command's flags over the shared settings.
func (opts *Options) settings() (config.Settings, error) {
	s, err := opts.Factory.Settings()
	if err != nil {
		return s, err
	}
	changed := opts.Changed
	if changed == nil {
		changed = func(string) bool { return false }
	}
	if changed("policy") {
		s.Policy = opts.Policy
	}
	if changed("state-dir") {
		s.StateDir = opts.StateDir
	}
	if changed("grace") {
		s.Grace = opts.Grace
	}
	if changed("max-ttl") {
		s.MaxTTL = opts.MaxTTL
	}
	if changed("max-delete") {
		if s.MaxDelete, err = plan.ParseMaxDelete(opts.MaxDelete); err != nil {
			return s, fmt.Errorf("--%w", err)
		}
	}
	if len(opts.MinEntries) > 0 {
		if s.MinEntries, err = config.ParseMinEntries(opts.MinEntries); err != nil {
			return s, err
		}
	}
	if changed("metrics-file") {
		s.MetricsFile = opts.MetricsFile
	}
	if changed("notify-routing-key") {
		s.Notify.RoutingKey = opts.NotifyKey
	}
	if changed("notify-url") {
		s.Notify.URL = opts.NotifyURL
	}
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
	if err := opts.Sleep(ctx, opts.jitter()); err != nil {
		return err
	}
	return runOnce(ctx, opts)
}

func (opts *Options) jitter() time.Duration {
	if opts.Jitter <= 0 {
		return 0
	}
	return time.Duration(opts.Rand(int64(opts.Jitter)))
}

// loop runs until ctx ends. A signal never interrupts a run half way: it
// ends the wait between runs, so every apply completes.
func loop(ctx context.Context, opts *Options) error {
	s, err := opts.settings()
	if err != nil {
		return err
	}
	if _, err := openSinks(opts, s); err != nil {
		return err
	}
	log := opts.Factory.Logger()
	for {
		if err := opts.Sleep(ctx, opts.jitter()); err != nil {
			break
		}
		err := runOnce(context.WithoutCancel(ctx), opts)
		code := cmdutil.ExitCode(err)
		if err != nil && code != cmdutil.ExitChanges {
			log.Error("run failed; retrying at the next interval", "err", err.Error(), "exit_code", code)
		}
		if err := opts.Sleep(ctx, opts.Interval); err != nil {
			break
		}
	}
	log.Info("stopping: signal received between runs")
	return nil
}

// target is one opened sink and what it receives.
type target struct {
	spec sink.Spec
	sink sink.Sink
}

// run is everything one sync produced, for output, state, metrics and
// alerts.
type run struct {
	start   time.Time
	report  render.SyncReport
	states  []plan.State
	refused []string
	err     error
}

func runOnce(ctx context.Context, opts *Options) error {
	f := opts.Factory
	r := &run{start: f.Now()}
	s, err := opts.settings()
	if err != nil {
		return err
	}
	if opts.PlanFile != "" {
		return applySaved(ctx, opts, s)
	}
	dryRun := opts.DryRun || opts.PlanOut != ""
	targets, err := openSinks(opts, s)
	if err != nil {
		return err
	}
	statePath := filepath.Join(s.StateDir, state.FileName)
	if !dryRun {
		unlock, err := lock(ctx, s.StateDir, opts.WaitLock)
		if err != nil {
			return err
		}
		defer unlock()
	}
	st, err := state.Load(statePath)
	var corrupt *state.CorruptError
	if errors.As(err, &corrupt) {
		if !dryRun {
			if aerr := corrupt.SetAside(f.Now()); aerr != nil {
				return aerr
			}
		}
		f.Logger().Warn(corrupt.Error())
		fmt.Fprintf(opts.IO.ErrOut, "warning: %s\n", corrupt.Error())
	}
	results, err := resolve.Sets(ctx, f, s)
	if err != nil {
		return err
	}
	// TODO(lead): pass held (what each sink holds for each set, read first).
	rs.Retain(results, st, f.Now(), rs.RetainPolicy{Grace: s.Grace, MaxTTL: s.MaxTTL, Limits: s.Limits}, nil)
	// One deadline for every sink's reads and applies, so a hung API call
	// or command cannot hold the lock for ever; each apply is re-runnable.
	sinkCtx, cancel := context.WithTimeout(ctx, opts.RunTimeout)
	defer cancel()
	r.report = render.SyncReport{DryRun: dryRun, Sets: results}
	r.report.Sinks, r.states = Plan(sinkCtx, targets, rs.Desired(results), plan.Policies[s.Policy], opts.Parallelism)
	r.refused = guard(r.report.Sinks, s.MaxDelete, opts.Force)
	for _, res := range results {
		if res.Err != nil {
			r.refused = append(r.refused, guardName(res.Err)...)
		}
	}
	if opts.PlanOut != "" {
		if err := savePlan(opts.PlanOut, f.Now(), s.Policy, targets, r); err != nil {
			return err
		}
	}
	if !dryRun {
		Apply(sinkCtx, targets, r.report.Sinks, opts.Parallelism)
	}
	markDeadline(sinkCtx, opts.RunTimeout, r.report.Sinks)
	if err := print(opts, r.report); err != nil {
		return err
	}
	r.err = outcome(r.report, rs.Errors(results), opts.DetailedExitcode)
	if !dryRun {
		opts.notify(ctx, s, st, r)
		if err := st.Save(statePath); err != nil {
			r.err = errors.Join(r.err, err)
		}
	}
	opts.finish(s, r)
	return r.err
}

func print(opts *Options, report render.SyncReport) error {
	if opts.Output == "json" {
		return render.SyncJSON(opts.IO.Out, report)
	}
	return render.SyncText(opts.IO.Out, report)
}

func openSinks(opts *Options, s config.Settings) ([]target, error) {
	f := opts.Factory
	var specs []sink.Spec
	switch {
	case len(opts.Sinks) > 0:
		for _, flag := range opts.Sinks {
			spec, err := f.Registry.ParseFlag(flag)
			if err != nil {
				return nil, err
			}
			specs = append(specs, spec)
		}
	case len(s.Sinks) > 0:
		for i := range s.Sinks {
			spec, err := f.Registry.FromConfig(&s.Sinks[i], i)
			if err != nil {
				return nil, err
			}
			specs = append(specs, spec)
		}
	default:
		spec, err := f.Registry.ParseFlag("nftables:" + nftables.DefaultPath)
		if err != nil {
			return nil, err
		}
		specs = append(specs, spec)
	}
	sets, err := s.SelectedSets()
	if err != nil {
		return nil, err
	}
	return open(f, s, specs, sets)
}

// open opens the sinks; with sets given, every set a spec routes must be
// one of them.
func open(f *cmdutil.Factory, s config.Settings, specs []sink.Spec, sets []config.SetSpec) ([]target, error) {
	selected := map[string]bool{}
	names := make([]string, len(sets))
	for i, set := range sets {
		selected[set.Name] = true
		names[i] = set.Name
	}
	env := f.SinkEnv(s)
	seen := map[string]string{}
	out := make([]target, 0, len(specs))
	var sinks []sink.Sink
	for _, spec := range specs {
		for _, name := range spec.Sets {
			if sets != nil && !selected[name] {
				return nil, fmt.Errorf("%s: set %q is not selected (selected: %s)", spec.Origin, name, strings.Join(names, ", "))
			}
		}
		sk, err := f.Registry.Open(spec, env)
		if err != nil {
			return nil, err
		}
		// Two specs for one target would fight over its entries.
		if prev, dup := seen[sk.Name()]; dup {
			return nil, fmt.Errorf("%s: same target as %s (%s)", spec.Origin, prev, sk.Name())
		}
		seen[sk.Name()] = spec.Origin
		out = append(out, target{spec: spec, sink: sk})
		sinks = append(sinks, sk)
	}
	if err := sink.CheckDistinctFiles(sinks); err != nil {
		return nil, err
	}
	return out, nil
}

// Plan reads every sink and diffs it against the sets routed to it. A sink
// that cannot be read gets an error and an empty plan; the others proceed.
func Plan(ctx context.Context, targets []target, desired []plan.DesiredSet, policy plan.Policy, parallelism int) ([]render.SinkReport, []plan.State) {
	out := make([]render.SinkReport, len(targets))
	states := make([]plan.State, len(targets))
	each(len(targets), parallelism, func(i int) {
		t := targets[i]
		out[i].Plan.Sink = t.sink.Name()
		st, err := t.sink.Current(ctx)
		if err != nil {
			out[i].Err = fmt.Errorf("read %s: %w", t.sink.Name(), err)
			return
		}
		states[i] = st
		d := sink.Route(t.spec, desired)
		if sh, ok := t.sink.(sink.Shaper); ok {
			d = sh.Shape(d)
		}
		out[i].Plan = plan.Calculate(t.sink.Name(), d, st, policy)
		if c, ok := t.sink.(sink.Checker); ok {
			out[i].Err = c.Check(out[i].Plan)
		}
	})
	return out, states
}

// guard applies the max-delete guard to every plan and returns the names
// of the guards that refused.
func guard(reports []render.SinkReport, m plan.MaxDelete, force bool) []string {
	var refused []string
	for i := range reports {
		r := &reports[i]
		// A sink's own limit (sink.Checker) refused already; count it.
		if name, ok := refusal(r.Err); ok {
			refused = append(refused, name)
			continue
		}
		if r.Err != nil || force {
			continue
		}
		if err := m.Check(r.Plan); err != nil {
			r.Err = err
			name, _ := refusal(err)
			refused = append(refused, name)
		}
	}
	return refused
}

// refusal names the guard behind err as metrics label it ("max_delete"),
// when a guard refused.
func refusal(err error) (string, bool) {
	var g *plan.GuardError
	if !errors.As(err, &g) {
		return "", false
	}
	return strings.ReplaceAll(g.Guard, "-", "_"), true
}

// guardName names the guard behind a frozen set, if one froze it.
func guardName(err error) []string {
	var unsafe *plan.UnsafePrefixError
	var min *rs.MinEntriesError
	switch {
	case errors.As(err, &unsafe):
		return []string{"unsafe_prefix"}
	case errors.As(err, &min):
		return []string{"min_entries"}
	}
	return nil
}

// Apply applies every plan that has changes and was read cleanly.
func Apply(ctx context.Context, targets []target, reports []render.SinkReport, parallelism int) {
	each(len(targets), parallelism, func(i int) {
		r := &reports[i]
		if r.Err != nil || !r.Plan.HasChanges() {
			return
		}
		if err := targets[i].sink.Apply(ctx, r.Plan); err != nil {
			r.Err = fmt.Errorf("apply %s: %w", r.Plan.Sink, err)
			return
		}
		r.Applied = true
	})
}

// deadlineError says the run's own deadline ended a sink call, which is
// otherwise a bare "context deadline exceeded" deep in an SDK error.
type deadlineError struct {
	timeout time.Duration
	err     error
}

func (e *deadlineError) Error() string {
	return fmt.Sprintf("run deadline exceeded (--run-timeout %s): %s", e.timeout, e.err)
}
func (e *deadlineError) Unwrap() error { return e.err }

// markDeadline names the run deadline in the sink errors it caused.
func markDeadline(ctx context.Context, timeout time.Duration, reports []render.SinkReport) {
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return
	}
	for i := range reports {
		if reports[i].Err != nil {
			reports[i].Err = &deadlineError{timeout: timeout, err: reports[i].Err}
		}
	}
}

// each runs fn(0..n-1) with at most limit at once.
func each(n, limit int, fn func(int)) {
	sem := make(chan struct{}, limit)
	var wg gosync.WaitGroup
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			fn(i)
		}()
	}
	wg.Wait()
}

// outcome maps the run to an error for the exit code: failures first, then
// changes when --detailed-exitcode asked for them.
func outcome(r render.SyncReport, sourceErr error, detailed bool) error {
	errs := []error{sourceErr}
	changes := false
	for _, s := range r.Sinks {
		errs = append(errs, s.Err)
		changes = changes || s.Plan.HasChanges()
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if detailed && changes {
		return cmdutil.ChangesError{}
	}
	return nil
}
