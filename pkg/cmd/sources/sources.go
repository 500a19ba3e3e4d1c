// Package sources is the command that lists the vendor presets a
// {type: vendor} source may name, with their filters.
package sources

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pdsafelist/pdsafelist/pkg/cmdutil"
	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/source/vendor"
)

// Options are the sources command's flags.
type Options struct {
	IO     *cmdutil.IOStreams
	Output string
}

// NewCmdSources builds the command; tests run it through the root command.
func NewCmdSources(f *cmdutil.Factory) *cobra.Command {
	opts := &Options{IO: f.IO}
	cmd := &cobra.Command{
		Use:   "sources",
		Short: "List the vendor presets and their filters",
		Long: `Sources lists the vendors a set's source may name as {type: vendor, name: NAME,
FILTER: VALUE, ...}: where each list is, its filters (a value or a list of
values; a required filter must be given), the change token it carries and
the limits a set using it gets unless it sets its own. See docs/vendors.md.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if opts.Output != "text" && opts.Output != "json" {
				return fmt.Errorf("--output %q: want text or json", opts.Output)
			}
			return Run(opts)
		},
	}
	cmd.Flags().StringVarP(&opts.Output, "output", "o", "text", "output format: text or json")
	return cmd
}

// Run prints every preset.
func Run(opts *Options) error {
	if opts.Output == "json" {
		return writeJSON(opts.IO.Out)
	}
	return writeText(opts.IO.Out)
}

// limits are a preset's default limits as a set gets them: the global
// default where the preset needs no more.
func limits(p vendor.Preset) (v4, v6 int) {
	v4, v6 = plan.DefaultLimits.MinIPv4Bits, plan.DefaultLimits.MinIPv6Bits
	if p.MinIPv4 > 0 {
		v4 = min(v4, p.MinIPv4)
	}
	if p.MinIPv6 > 0 {
		v6 = min(v6, p.MinIPv6)
	}
	return v4, v6
}

func writeText(w io.Writer) error {
	var b strings.Builder
	for i, name := range vendor.Names() {
		p := vendor.Presets[name]
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "%s: %s\n", p.Name, p.Title)
		fmt.Fprintf(&b, "  url:    %s\n", p.URL)
		for _, f := range p.Filters {
			var notes []string
			if f.Values != nil {
				notes = append(notes, strings.Join(f.Values, "|"))
			}
			if f.Required {
				notes = append(notes, "required")
			}
			if f.Default != nil {
				notes = append(notes, "default "+strings.Join(f.Default, ","))
			}
			note := ""
			if len(notes) > 0 {
				note = " [" + strings.Join(notes, "; ") + "]"
			}
			fmt.Fprintf(&b, "  filter: %s%s: %s\n", f.Name, note, f.Help)
		}
		token := p.Token
		if token == "" {
			token = "none (ETag and Last-Modified only)"
		}
		fmt.Fprintf(&b, "  token:  %s\n", token)
		v4, v6 := limits(p)
		fmt.Fprintf(&b, "  limits: min_ipv4_prefix %d, min_ipv6_prefix %d\n", v4, v6)
		fmt.Fprintf(&b, "  docs:   %s\n", p.Doc)
		if p.Sunset != "" {
			fmt.Fprintf(&b, "  sunset: %s: %s\n", p.Sunset, p.SunsetNote)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

type jsonFilter struct {
	Name     string   `json:"name"`
	Help     string   `json:"help,omitempty"`
	Values   []string `json:"values,omitempty"`
	Default  []string `json:"default,omitempty"`
	Required bool     `json:"required,omitempty"`
}

type jsonPreset struct {
	Name          string       `json:"name"`
	Title         string       `json:"title"`
	URL           string       `json:"url"`
	Doc           string       `json:"doc"`
	Filters       []jsonFilter `json:"filters"`
	Token         string       `json:"token,omitempty"`
	MinIPv4Prefix int          `json:"min_ipv4_prefix"`
	MinIPv6Prefix int          `json:"min_ipv6_prefix"`
	Sunset        string       `json:"sunset,omitempty"`
	SunsetNote    string       `json:"sunset_note,omitempty"`
}

func writeJSON(w io.Writer) error {
	out := struct {
		FormatVersion int          `json:"format_version"`
		Presets       []jsonPreset `json:"presets"`
	}{FormatVersion: 1}
	for _, name := range vendor.Names() {
		p := vendor.Presets[name]
		jp := jsonPreset{Name: p.Name, Title: p.Title, URL: p.URL, Doc: p.Doc, Token: p.Token, Filters: []jsonFilter{}, Sunset: p.Sunset, SunsetNote: p.SunsetNote}
		jp.MinIPv4Prefix, jp.MinIPv6Prefix = limits(p)
		for _, f := range p.Filters {
			jp.Filters = append(jp.Filters, jsonFilter{Name: f.Name, Help: f.Help, Values: f.Values, Default: f.Default, Required: f.Required})
		}
		out.Presets = append(out.Presets, jp)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
