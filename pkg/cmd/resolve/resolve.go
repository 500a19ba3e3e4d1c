// Package resolve is the command that shows the desired sets without
// touching any sink.
package resolve

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/pdsafelist/pdsafelist/pkg/cmdutil"
	"github.com/pdsafelist/pdsafelist/pkg/render"
	"github.com/pdsafelist/pdsafelist/pkg/resolution"
)

// Options are the resolve command's flags.
type Options struct {
	IO      *cmdutil.IOStreams
	Factory *cmdutil.Factory
	Output  string
}

// NewCmdResolve builds the command; tests run it through the root command.
func NewCmdResolve(f *cmdutil.Factory) *cobra.Command {
	opts := &Options{IO: f.IO, Factory: f}
	cmd := &cobra.Command{
		Use:   "resolve",
		Short: "Resolve the selected sets and print their addresses",
		Long: `Resolve queries every source of every selected set at once and prints the
prefixes each set would allow. It never touches a sink.

A set whose sources failed, came back empty or offered an unsafe prefix is
shown as FROZEN; sync leaves such a set as the sinks hold it.

` + cmdutil.SourceHelp(f.SourceRegistry),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.Output != "text" && opts.Output != "json" {
				return fmt.Errorf("--output %q: want text or json", opts.Output)
			}
			return Run(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVarP(&opts.Output, "output", "o", "text", "output format: text or json")
	_ = cmd.RegisterFlagCompletionFunc("output", cmdutil.CompleteValues("text", "json"))
	return cmd
}

// Run resolves and prints. Failed sources make it exit non-zero after
// printing, so scripts see both the data and the failure.
func Run(ctx context.Context, opts *Options) error {
	settings, err := opts.Factory.Settings()
	if err != nil {
		return err
	}
	results, err := opts.Factory.ResolveSets(ctx, settings)
	if err != nil {
		return err
	}
	if opts.Output == "json" {
		err = render.ResolveJSON(opts.IO.Out, results)
	} else {
		err = render.ResolveText(opts.IO.Out, results)
	}
	if err != nil {
		return err
	}
	return resolution.Errors(results)
}
