// Package check is the preflight: it reaches every source and reads every
// sink of a sync, with the same config and flags, and writes nothing.
package check

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/pdsafelist/pdsafelist/pkg/cmdutil"
	"github.com/pdsafelist/pdsafelist/pkg/config"
	"github.com/pdsafelist/pdsafelist/pkg/oneline"
	"github.com/pdsafelist/pdsafelist/pkg/procrun"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/source"
	"github.com/pdsafelist/pdsafelist/pkg/state"
)

// Options are the check command's flags.
type Options struct {
	IO      *cmdutil.IOStreams
	Factory *cmdutil.Factory
	Sinks   []string
	// Run runs a program (nft --version, iptables-save); tests replace it.
	Run func(ctx context.Context, argv []string) ([]byte, error)
	// Euid and CapEff describe this process's privileges; tests replace them.
	Euid   int
	CapEff func() (uint64, error)
}

// NewCmdCheck builds the command.
func NewCmdCheck(f *cmdutil.Factory) *cobra.Command {
	opts := &Options{IO: f.IO, Factory: f, Euid: os.Geteuid(), CapEff: capEff,
		Run: func(ctx context.Context, argv []string) ([]byte, error) { return procrun.Run(ctx, argv, nil) }}
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Preflight: reach every source and read every sink, writing nothing",
		Long: `Check answers "will sync work here?" before the first real run. With the
same config and flags as sync, it reports one line each: the config file,
every source (reached, or why not), every sink (read, writable with this
process's privileges, the nft or iptables version and the iptables backend
against the kernel's ruleset), the state directory, the metrics file and
the notification endpoint.

It never writes a sink's file, a kernel rule, a cloud resource, the state
or the metrics file, and sends no alert.

Exit codes: 0 every check passed, 1 at least one failed.`,
		Example: `  pdsafelist check
  pdsafelist check --config /etc/pdsafelist/pdsafelist.yaml
  pdsafelist check --sink nftables:/etc/nftables.d/pagerduty.nft?apply=true`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return Run(cmd.Context(), opts) },
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&opts.Sinks, "sink", nil, "sink `SPEC` TYPE[:ARG][?key=value&sets=a,b] (repeatable), as for sync")
	sf := f.SettingFlags
	cmdutil.Bind(sf, "state-dir", func(s *config.Settings) *string { return &s.StateDir }, fl.StringVar, "state `DIR`, as for sync")
	cmdutil.Bind(sf, "metrics-file", func(s *config.Settings) *string { return &s.MetricsFile }, fl.StringVar, "Prometheus textfile `PATH`, as for sync")
	cmdutil.Bind(sf, "notify-routing-key", func(s *config.Settings) *string { return &s.Notify.RoutingKey }, fl.StringVar, "PagerDuty Events API `KEY`, as for sync (no event is sent)")
	cmdutil.Bind(sf, "notify-url", func(s *config.Settings) *string { return &s.Notify.URL }, fl.StringVar, "Events API `URL`, as for sync")
	_ = cmd.RegisterFlagCompletionFunc("sink", f.CompleteSinkTypes())
	return cmd
}

// report prints one line per check and counts the failures.
type report struct {
	w             io.Writer
	total, failed int
}

func (r *report) line(ok bool, what, format string, args ...any) {
	r.total++
	status := "ok  "
	if !ok {
		status = "FAIL"
		r.failed++
	}
	fmt.Fprintf(r.w, "%s  %-8s %s\n", status, what, oneline.String(fmt.Sprintf(format, args...)))
}

// FailedError is a preflight with failed checks; it exits 1.
type FailedError struct{ Failed, Total int }

func (e *FailedError) Error() string {
	return fmt.Sprintf("preflight: %d of %d checks failed", e.Failed, e.Total)
}

// Run runs every check.
func Run(ctx context.Context, opts *Options) error {
	// check writes nothing, not even a sink's read cache.
	ctx = sink.ReadOnly(ctx)
	f := opts.Factory
	r := &report{w: opts.IO.Out}
	s, err := f.Settings()
	if err != nil {
		r.line(false, "config", "%s", err)
		return &FailedError{r.failed, r.total}
	}
	if s.StateDir == "" {
		s.StateDir = state.DefaultDir(os.Geteuid(), os.Getenv)
	}
	if s.ConfigFile != "" {
		r.line(true, "config", "%s read", s.ConfigFile)
	} else {
		r.line(true, "config", "no config file (searched %s, %s): built-in defaults", config.DefaultPath, config.SystemPath)
	}
	opts.sources(ctx, r, s)
	opts.sinks(ctx, r, s)
	opts.stateDir(r, s)
	opts.metrics(r, s)
	opts.notify(ctx, r, s)
	if r.failed > 0 {
		return &FailedError{r.failed, r.total}
	}
	fmt.Fprintf(opts.IO.Out, "All %d checks passed.\n", r.total)
	return nil
}

func (opts *Options) sources(ctx context.Context, r *report, s config.Settings) {
	results, err := opts.Factory.ResolveSets(ctx, s)
	if err != nil {
		r.line(false, "source", "%s", err)
		return
	}
	for _, set := range results {
		for _, src := range set.Sources {
			if src.Err != nil {
				r.line(false, "source", "%s: %s %s: %s", set.Spec.Name, src.Kind, src.Name, oneline.Error(src.Err))
				continue
			}
			r.line(true, "source", "%s: %s %s: %d addresses", set.Spec.Name, src.Kind, src.Name, src.Len())
		}
		// A guard (min-entries, an unsafe answer) freezes a set whose
		// sources each answered.
		if set.Err != nil && !anyFailed(set.Sources) {
			r.line(false, "set", "%s: %s", set.Spec.Name, oneline.Error(set.Err))
		}
	}
}

func (opts *Options) sinks(ctx context.Context, r *report, s config.Settings) {
	f := opts.Factory
	specs, err := f.SinkSpecs(opts.Sinks, s)
	if err != nil {
		r.line(false, "sink", "%s", err)
		return
	}
	sets, err := s.SelectedSets()
	if err != nil {
		r.line(false, "sink", "%s", err)
		return
	}
	targets, err := f.OpenSinks(ctx, s, specs, sets)
	if err != nil {
		r.line(false, "sink", "%s", err)
		return
	}
	tools := map[string]bool{}
	for _, t := range targets {
		st, err := t.Sink.Current(ctx)
		if err != nil {
			r.line(false, "sink", "%s: cannot read: %s", t.Sink.Name(), oneline.Error(err))
		} else {
			msg := fmt.Sprintf("%s: read, %d entries ours", t.Sink.Name(), len(st.Owned)+len(st.Unlabelled))
			if len(st.Drift) > 0 {
				msg += fmt.Sprintf(", %d drift notes (sync rewrites)", len(st.Drift))
			}
			r.line(true, "sink", "%s", msg)
		}
		if fw, ok := t.Sink.(sink.FileWriter); ok {
			for _, file := range fw.Files() {
				if err := writable(file); err != nil {
					r.line(false, "sink", "%s: %s not writable: %s", t.Sink.Name(), file, err)
				} else {
					r.line(true, "sink", "%s: %s writable", t.Sink.Name(), file)
				}
			}
		}
		switch kind := kernelTool(t.Spec); kind {
		case "nft", "iptables":
			if !opts.netAdmin() {
				r.line(false, "sink", "%s: changes kernel rules, and this process has neither root nor CAP_NET_ADMIN", t.Sink.Name())
			} else {
				r.line(true, "sink", "%s: may change kernel rules (CAP_NET_ADMIN)", t.Sink.Name())
			}
			if !tools[kind] {
				tools[kind] = true
				if kind == "nft" {
					opts.nftVersion(ctx, r)
				} else {
					opts.iptablesBackend(ctx, r)
				}
			}
		case "":
			if strings.HasPrefix(t.Spec.Type, "ec2") || strings.HasPrefix(t.Spec.Type, "aws") || strings.HasPrefix(t.Spec.Type, "k8s") {
				r.line(true, "sink", "%s: write permission not checked (only a write can prove it; see the sink's permissions page)", t.Sink.Name())
			}
		}
	}
}

// kernelTool says which program a sink changes kernel rules with: nft
// for an nftables sink with apply, iptables for the live iptables sink.
func kernelTool(spec sink.Spec) string {
	switch spec.Type {
	case "iptables":
		return "iptables"
	case "nftables":
		if optionTrue(spec, "apply") {
			return "nft"
		}
	}
	return ""
}

func optionTrue(spec sink.Spec, key string) bool {
	n := spec.Options
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			v, _ := strconv.ParseBool(n.Content[i+1].Value)
			return v
		}
	}
	return false
}

func (opts *Options) nftVersion(ctx context.Context, r *report) {
	out, err := opts.Run(ctx, []string{"nft", "--version"})
	if err != nil {
		r.line(false, "nft", "%s", err)
		return
	}
	r.line(true, "nft", "%s", strings.TrimSpace(string(out)))
}

// iptablesBackend compares the backend `iptables` uses with where the
// kernel's rules are: a legacy iptables on a host whose rules are in
// nf_tables (or the reverse) adds rules nobody else sees, and nothing
// fails. The saves are reads.
func (opts *Options) iptablesBackend(ctx context.Context, r *report) {
	out, err := opts.Run(ctx, []string{"iptables", "--version"})
	if err != nil {
		r.line(false, "iptables", "%s", err)
		return
	}
	version := strings.TrimSpace(string(out))
	backend := "legacy"
	if strings.Contains(version, "nf_tables") {
		backend = "nf_tables"
	}
	rules := map[string]int{}
	for _, b := range []string{"legacy", "nft"} {
		out, err := opts.Run(ctx, []string{"iptables-" + b + "-save"})
		if err != nil {
			continue // that backend is not installed: nothing can be there
		}
		rules[b] = countRules(out)
	}
	other, otherName := rules["nft"], "nf_tables"
	if backend == "nf_tables" {
		other, otherName = rules["legacy"], "legacy"
	}
	mine := rules["legacy"]
	if backend == "nf_tables" {
		mine = rules["nft"]
	}
	if other > 0 && mine == 0 {
		r.line(false, "iptables", "%s: iptables uses %s, but the kernel's %d iptables rules are in %s: the rules pdsafelist adds would sit beside them, unseen; switch with update-alternatives --set iptables /usr/sbin/iptables-%s",
			version, backend, other, otherName, map[string]string{"nf_tables": "nft", "legacy": "legacy"}[otherName])
		return
	}
	msg := fmt.Sprintf("%s: backend %s, %d rules there", version, backend, mine)
	if other > 0 {
		msg += fmt.Sprintf("; %d more rules in %s (both backends in use)", other, otherName)
	}
	r.line(true, "iptables", "%s", msg)
}

// countRules counts the -A lines of an iptables-save.
func countRules(save []byte) int {
	n := 0
	sc := bufio.NewScanner(strings.NewReader(string(save)))
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "-A ") {
			n++
		}
	}
	return n
}

func (opts *Options) netAdmin() bool {
	if opts.Euid == 0 {
		return true
	}
	c, err := opts.CapEff()
	return err == nil && c&(1<<unix.CAP_NET_ADMIN) != 0
}

// capEff reads this process's effective capabilities.
func capEff() (uint64, error) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for l := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, errors.New("no CapEff in /proc/self/status")
}

func (opts *Options) stateDir(r *report, s config.Settings) {
	if err := state.CheckDir(s.StateDir, os.Geteuid()); err != nil {
		r.line(false, "state", "%s", err)
		return
	}
	if err := writable(filepath.Join(s.StateDir, state.FileName)); err != nil {
		r.line(false, "state", "%s not writable: %s", s.StateDir, err)
		return
	}
	r.line(true, "state", "%s writable", s.StateDir)
}

func (opts *Options) metrics(r *report, s config.Settings) {
	if s.MetricsFile == "" {
		return
	}
	if err := writable(s.MetricsFile); err != nil {
		r.line(false, "metrics", "%s not writable: %s", s.MetricsFile, err)
		return
	}
	r.line(true, "metrics", "%s writable", s.MetricsFile)
}

// notify reaches the Events API without sending an event: any HTTP
// answer to a HEAD request proves the endpoint, TLS and proxy work.
func (opts *Options) notify(ctx context.Context, r *report, s config.Settings) {
	if s.Notify.RoutingKey == "" {
		return
	}
	client, err := opts.Factory.NotifyClient(s)
	if err != nil {
		r.line(false, "notify", "%s", err)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, s.Notify.URL, nil)
	if err != nil {
		r.line(false, "notify", "%s: %s", s.Notify.URL, err)
		return
	}
	resp, err := client.Do(req)
	if err != nil {
		r.line(false, "notify", "%s unreachable: %s", s.Notify.URL, oneline.Error(errors.Unwrap(err)))
		return
	}
	_ = resp.Body.Close()
	r.line(true, "notify", "%s reachable (HTTP %d to HEAD; no event sent)", s.Notify.URL, resp.StatusCode)
}

// writable says whether this process could create or replace path: the
// file if it exists, else the nearest existing directory above it (the
// sinks create missing directories). access(2) answers without writing,
// and sees a read-only mount (EROFS) such as systemd's ProtectSystem.
func writable(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	if _, err := os.Stat(abs); err == nil {
		if err := unix.Access(abs, unix.W_OK); err != nil {
			return err
		}
	}
	dir := filepath.Dir(abs)
	for {
		fi, err := os.Stat(dir)
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("%s is not a directory", dir)
			}
			return unix.Access(dir, unix.W_OK)
		}
		// ENOTDIR: a file stands where a directory is wanted; go up to it.
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, unix.ENOTDIR) || filepath.Dir(dir) == dir {
			return err
		}
		dir = filepath.Dir(dir)
	}
}

func anyFailed(rs []source.Result) bool {
	for _, r := range rs {
		if r.Err != nil {
			return true
		}
	}
	return false
}
