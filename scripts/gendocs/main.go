// Command gendocs writes pdsafelist's reference docs from the code, so they
// never drift from it: man pages, Markdown pages and shell completions from
// the command tree, and the option tables of the per-type pages
// docs/sinks/TYPE.md and docs/sources/TYPE.md from each registered type's
// option struct.
//
//	go run ./scripts/gendocs -out dist/docs   # man, md, completions
//	go run ./scripts/gendocs -pages           # rewrite the option tables in docs/
//	go run ./scripts/gendocs -pages -check    # fail when a page is stale
package main

import (
	"bytes"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra/doc"

	"github.com/pdsafelist/pdsafelist/pkg/cmd/root"
	"github.com/pdsafelist/pdsafelist/pkg/cmdutil"
)

func main() {
	out := flag.String("out", "dist/docs", "output `DIR`")
	pagesMode := flag.Bool("pages", false, "rewrite the option tables of docs/sinks/*.md and docs/sources/*.md instead")
	check := flag.Bool("check", false, "with -pages: write nothing, fail when a page is stale")
	repo := flag.String("repo", ".", "with -pages: the repository `DIR`")
	flag.Parse()
	if *pagesMode {
		if err := writePages(*repo, *check); err != nil {
			fmt.Fprintf(os.Stderr, "gendocs: %v\n", err)
			os.Exit(1)
		}
		return
	}
	if err := generate(*out); err != nil {
		fmt.Fprintf(os.Stderr, "gendocs: %v\n", err)
		os.Exit(1)
	}
}

// writePages rewrites every stale type page, or with check only names them.
func writePages(repo string, check bool) error {
	want, err := pages(repo)
	if err != nil {
		return err
	}
	var stale []string
	for _, path := range slices.Sorted(maps.Keys(want)) {
		old, _ := os.ReadFile(path)
		if bytes.Equal(old, want[path]) {
			continue
		}
		stale = append(stale, rel(repo, path))
		if !check {
			if err := os.WriteFile(path, want[path], 0o644); err != nil {
				return err
			}
		}
	}
	if check && len(stale) > 0 {
		return fmt.Errorf("stale option tables in %s: run `go run ./scripts/gendocs -pages`", strings.Join(stale, ", "))
	}
	return nil
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
