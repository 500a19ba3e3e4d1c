package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The generated docs cover every command and carry its real flags.
func TestGenerate(t *testing.T) {
	out := t.TempDir()
	if err := generate(out); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{
		"man/pdsafelist-sync.1":       "dry-run",
		"man/pdsafelist-resolve.1":    "output",
		"md/pdsafelist_sync.md":       "--detailed-exitcode",
		"md/pdsafelist.md":            "--nameserver",
		"completions/pdsafelist.bash": "__start_pdsafelist",
		"completions/_pdsafelist":     "#compdef pdsafelist",
		"completions/pdsafelist.fish": "complete -c pdsafelist",
		"completions/pdsafelist.ps1":  "Register-ArgumentCompleter",
		"md/pdsafelist_version.md":    "version",
	} {
		data, err := os.ReadFile(filepath.Join(out, file))
		if err != nil {
			t.Errorf("%s: %v", file, err)
			continue
		}
		if !strings.Contains(string(data), want) {
			t.Errorf("%s lacks %q", file, want)
		}
	}
}
