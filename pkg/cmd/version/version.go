// Package version prints what the build stamped in.
package version

import (
	"encoding/json"
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/pdsafelist/pdsafelist/pkg/build"
	"github.com/pdsafelist/pdsafelist/pkg/cmdutil"
)

// Options are the version command's flags.
type Options struct {
	IO     *cmdutil.IOStreams
	Output string
}

// NewCmdVersion builds the command; tests run it through the root command.
func NewCmdVersion(f *cmdutil.Factory) *cobra.Command {
	opts := &Options{IO: f.IO}
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit and build date",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return versionRun(opts)
		},
	}
	cmd.Flags().StringVarP(&opts.Output, "output", "o", "text", "output format: text or json")
	return cmd
}

// Line is the one-line version, shared with --version.
func Line() string {
	b := build.Get()
	return fmt.Sprintf("pdsafelist %s (commit %s, built %s, %s)", b.Version, b.Commit, b.Date, runtime.Version())
}

func versionRun(opts *Options) error {
	b := build.Get()
	info := map[string]string{"version": b.Version, "commit": b.Commit, "date": b.Date, "go": runtime.Version()}
	switch opts.Output {
	case "json":
		enc := json.NewEncoder(opts.IO.Out)
		return enc.Encode(info)
	case "text":
		_, err := fmt.Fprintln(opts.IO.Out, Line())
		return err
	}
	return fmt.Errorf("--output %q: want text or json", opts.Output)
}
