// Command gendocs writes pdsafelist's reference docs from the command tree:
// man pages, Markdown pages and shell completions, so they never drift from
// the flags.
//
//	go run ./scripts/gendocs -out dist/docs
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra/doc"

	"github.com/pdsafelist/pdsafelist/pkg/cmd/root"
	"github.com/pdsafelist/pdsafelist/pkg/cmdutil"
)

func main() {
	out := flag.String("out", "dist/docs", "output `DIR`")
	flag.Parse()
	if err := generate(*out); err != nil {
		fmt.Fprintf(os.Stderr, "gendocs: %v\n", err)
		os.Exit(1)
	}
}

func generate(out string) error {
	dirs := map[string]string{"man": filepath.Join(out, "man"), "md": filepath.Join(out, "md"), "completions": filepath.Join(out, "completions")}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	cmd := root.NewCmdRoot(root.NewFactory(cmdutil.System()))
	// Generated files must not change with the day they were built.
	cmd.DisableAutoGenTag = true
	if err := doc.GenManTree(cmd, &doc.GenManHeader{Title: "PDSAFELIST", Section: "1", Source: "pdsafelist"}, dirs["man"]); err != nil {
		return fmt.Errorf("man pages: %w", err)
	}
	if err := doc.GenMarkdownTree(cmd, dirs["md"]); err != nil {
		return fmt.Errorf("markdown: %w", err)
	}
	for name, gen := range map[string]func(string) error{
		"pdsafelist.bash": func(p string) error { return cmd.GenBashCompletionFileV2(p, true) },
		"_pdsafelist":     cmd.GenZshCompletionFile,
		"pdsafelist.fish": func(p string) error { return cmd.GenFishCompletionFile(p, true) },
		"pdsafelist.ps1":  cmd.GenPowerShellCompletionFile,
	} {
		if err := gen(filepath.Join(dirs["completions"], name)); err != nil {
			return fmt.Errorf("completion %s: %w", name, err)
		}
	}
	return nil
}
