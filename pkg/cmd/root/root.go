// Package root wires the commands together and turns their errors into
// messages and exit codes.
package root

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pdsafelist/pdsafelist/pkg/cmd/check"
	"github.com/pdsafelist/pdsafelist/pkg/cmd/resolve"
	"github.com/pdsafelist/pdsafelist/pkg/cmd/sources"
	"github.com/pdsafelist/pdsafelist/pkg/cmd/synccmd"
	"github.com/pdsafelist/pdsafelist/pkg/cmd/version"
	"github.com/pdsafelist/pdsafelist/pkg/cmdutil"
	"github.com/pdsafelist/pdsafelist/pkg/config"
	"github.com/pdsafelist/pdsafelist/pkg/controller"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/sink/ec2"
	"github.com/pdsafelist/pdsafelist/pkg/sink/iptables"
	"github.com/pdsafelist/pdsafelist/pkg/sink/k8singress"
	"github.com/pdsafelist/pdsafelist/pkg/sink/k8snetpol"
	"github.com/pdsafelist/pdsafelist/pkg/sink/kubecidr"
	"github.com/pdsafelist/pdsafelist/pkg/sink/nftables"
	"github.com/pdsafelist/pdsafelist/pkg/sink/template"
	"github.com/pdsafelist/pdsafelist/pkg/sink/wafv2"
	"github.com/pdsafelist/pdsafelist/pkg/source"
	"github.com/pdsafelist/pdsafelist/pkg/source/dns"
	"github.com/pdsafelist/pdsafelist/pkg/source/file"
	"github.com/pdsafelist/pdsafelist/pkg/source/httplist"
	"github.com/pdsafelist/pdsafelist/pkg/source/static"
	"github.com/pdsafelist/pdsafelist/pkg/source/vendor"
)

// Registry is every sink type the binary knows.
func Registry() sink.Registry {
	return sink.Registry{
		"iptables":                iptables.Factory,
		"iptables-file":           iptables.FileFactory,
		"nftables":                nftables.Factory,
		"ec2":                     ec2.GroupFactory,
		"ec2-prefix-list":         ec2.PrefixListFactory,
		"template":                template.Factory,
		"aws-wafv2-ipset":         wafv2.Factory,
		"k8s-networkpolicy":       k8snetpol.Factory,
		"cilium-cidrgroup":        kubecidr.CiliumFactory,
		"calico-globalnetworkset": kubecidr.CalicoFactory,
		k8singress.Type:           k8singress.Factory,
	}
}

// SourceRegistry is every source type the binary knows.
func SourceRegistry() source.Registry {
	return source.Registry{
		"dns":    dns.Factory,
		"file":   file.Factory,
		"http":   httplist.Factory,
		"static": static.Factory,
		"vendor": vendor.Factory,
	}
}

// NewFactory returns the factory used by the real binary.
func NewFactory(streams *cmdutil.IOStreams) *cmdutil.Factory {
	return &cmdutil.Factory{IO: streams, Global: &cmdutil.GlobalOptions{}, Registry: Registry(), SourceRegistry: SourceRegistry(), SettingFlags: cmdutil.NewSettingFlags(),
		DefaultSink: nftables.DefaultSpec(), Now: time.Now}
}

// NewCmdRoot builds the command tree around f.
func NewCmdRoot(f *cmdutil.Factory) *cobra.Command {
	g := f.Global
	cmd := &cobra.Command{
		Use:   "pdsafelist",
		Short: "Keep firewalls in sync with PagerDuty's IP addresses",
		Long: `pdsafelist resolves PagerDuty's addresses from DNS and from the published
safelists, and keeps nftables, iptables and AWS security groups in sync with
them. A failed or empty source changes nothing, unsafe prefixes such as
0.0.0.0/0 are refused, and only entries pdsafelist created are ever removed.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			g.Flags = cmd.Flags()
			if g.LogFormat != "text" && g.LogFormat != "json" {
				return fmt.Errorf("--log-format %q: want text or json", g.LogFormat)
			}
			return nil
		},
	}
	cmd.SetOut(f.IO.Out)
	cmd.SetErr(f.IO.ErrOut)
	// --version as well as the version command.
	cmd.Version = version.Line()
	cmd.SetVersionTemplate("{{.Version}}\n")
	pf := cmd.PersistentFlags()
	pf.StringVar(&g.ConfigPath, "config", "", "config `FILE`, - for standard input (default $PDSAFELIST_CONFIG, else ./pdsafelist.yaml or /etc/pdsafelist/pdsafelist.yaml when present)")
	if f.SettingFlags == nil {
		f.SettingFlags = cmdutil.NewSettingFlags()
	}
	sf := f.SettingFlags
	cmdutil.Bind(sf, "nameserver", func(s *config.Settings) *[]string { return &s.Nameservers }, pf.StringArrayVar, "DNS server `HOST[:PORT]` (repeatable; default from /etc/resolv.conf)")
	cmdutil.Bind(sf, "region", func(s *config.Settings) *string { return &s.Region }, pf.StringVar, "PagerDuty service region: us, eu or all")
	cmdutil.Bind(sf, "sets", func(s *config.Settings) *[]string { return &s.Sets }, pf.StringSliceVar, "sets to manage, comma-separated (default all: events,api,app,webhooks)")
	cmdutil.Bind(sf, "pagerduty-lists-url", func(s *config.Settings) *string { return &s.ListsURL }, pf.StringVar, "base `URL` of PagerDuty's published IP lists")
	cmdutil.Bind(sf, "webhook-ips-url", func(s *config.Settings) *string { return &s.WebhookIPsURL }, pf.StringVar, "also use the legacy webhook list at `URL` (frozen, holds retired IPs)")
	cmdutil.Bind(sf, "ca-file", func(s *config.Settings) *string { return &s.CAFile }, pf.StringVar, "extra CA certificate `FILE` (PEM) for the HTTP lists, notifications and AWS; SSL_CERT_FILE is honoured too")
	cmdutil.Bind(sf, "timeout", func(s *config.Settings) *time.Duration { return &s.Timeout }, pf.DurationVar, "deadline for resolving all sources")
	pf.StringVar(&g.LogFormat, "log-format", "text", "log format on stderr: text or json")
	pf.CountVarP(&g.Verbose, "verbose", "v", "log more (-v info, -vv debug)")

	_ = cmd.RegisterFlagCompletionFunc("region", cmdutil.CompleteRegion())
	_ = cmd.RegisterFlagCompletionFunc("sets", f.CompleteSets())
	_ = cmd.RegisterFlagCompletionFunc("log-format", cmdutil.CompleteValues("text", "json"))

	cmd.AddCommand(check.NewCmdCheck(f))
	cmd.AddCommand(resolve.NewCmdResolve(f))
	cmd.AddCommand(synccmd.NewCmdSync(f))
	cmd.AddCommand(sources.NewCmdSources(f))
	cmd.AddCommand(version.NewCmdVersion(f))
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &flagError{err} })
	return cmd
}

type flagError struct{ error }

// Main runs the CLI and returns the exit code. Errors are printed one per
// line, never with a stack trace.
func Main(ctx context.Context, args []string, streams *cmdutil.IOStreams) int {
	return Execute(ctx, NewFactory(streams), args)
}

// Execute runs the command tree with a given factory; tests use it.
func Execute(ctx context.Context, f *cmdutil.Factory, args []string) int {
	cmd := NewCmdRoot(f)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		return cmdutil.ExitOK
	}
	// A signal's "context canceled" deep in a source or sink says less
	// than the signal itself.
	var intr *cmdutil.InterruptedError
	if errors.As(context.Cause(ctx), &intr) {
		err = intr
	}
	var changes controller.ChangesError
	if !errors.As(err, &changes) {
		for _, line := range strings.Split(err.Error(), "\n") {
			if line = strings.TrimSpace(line); line == "" {
				continue
			}
			// A JSON log stays all JSON, final errors included.
			if f.Global.LogFormat == "json" {
				f.Logger().Error(line, "exit_code", cmdutil.ExitCode(err))
				continue
			}
			fmt.Fprintf(f.IO.ErrOut, "error: %s\n", line)
		}
		var fe *flagError
		if errors.As(err, &fe) {
			fmt.Fprintf(f.IO.ErrOut, "Run '%s --help' for usage.\n", cmd.CommandPath())
		}
	}
	return cmdutil.ExitCode(err)
}
