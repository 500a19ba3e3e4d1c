package root_test

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/pdsafelist/pdsafelist/pkg/cmd/root"
	"github.com/pdsafelist/pdsafelist/pkg/cmdutil"
	"github.com/pdsafelist/pdsafelist/pkg/config"
)

var exampleSink = regexp.MustCompile(`--sink (?:'([^']+)'|(\S+))`)

// Every --sink in a command's examples parses and opens: a worked example
// that fails on first use teaches nothing.
func TestHelpExampleSinksOpen(t *testing.T) {
	streams, _, _ := cmdutil.Test()
	f := root.NewFactory(streams)
	env := f.SinkEnv(context.Background(), config.Defaults())
	n := 0
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, m := range exampleSink.FindAllStringSubmatch(c.Example, -1) {
			arg := m[1] + m[2]
			n++
			spec, err := f.Registry.ParseFlag(arg)
			if err != nil {
				t.Errorf("%s example: %v", c.CommandPath(), err)
				continue
			}
			if _, err := f.Registry.Open(spec, env); err != nil && !strings.Contains(err.Error(), "credentials") {
				t.Errorf("%s example --sink %s: %v", c.CommandPath(), arg, err)
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root.NewCmdRoot(f))
	if n < 3 {
		t.Errorf("found %d --sink examples, want the nftables, template and WAF ones", n)
	}
}
