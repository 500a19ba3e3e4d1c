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

// Every registered sink and source type has a page, and each page's option
// table is what its option struct says now. On failure: go run
// ./scripts/gendocs -pages, then review the diff.
func TestPagesCurrent(t *testing.T) {
	want, err := pages(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range registered() {
		path := d.page(filepath.Join("..", ".."))
		got, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("%s type %s: %v", d.kind, d.name, err)
			continue
		}
		if string(got) != string(want[path]) {
			t.Errorf("%s is stale: run `go run ./scripts/gendocs -pages` and review the diff", path)
		}
	}
}

// A type without a page fails with what to write, not a bare "not found".
func TestPagesMissing(t *testing.T) {
	_, err := pages(t.TempDir())
	if err == nil {
		t.Fatal("no error for a repository without pages")
	}
	for _, want := range []string{"docs/sinks/nftables.md: missing", "docs/sources/dns.md: missing", "## Guarantees", beginMarker, endMarker, "go run ./scripts/gendocs -pages"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

// A page without its markers or a section is refused, naming what lacks.
func TestFillRefuses(t *testing.T) {
	page := "# x\n\n## Example\n\n## Options\n\n" + beginMarker + "\nold\n" + endMarker + "\n\n## Guarantees\n"
	got, err := fill([]byte(page), "new\n", sourceSections)
	if err != nil || !strings.Contains(string(got), beginMarker+"\nnew\n"+endMarker) || strings.Contains(string(got), "old") {
		t.Errorf("fill: %v\n%s", err, got)
	}
	if _, err := fill([]byte(strings.Replace(page, "## Guarantees", "## Notes", 1)), "new\n", sourceSections); err == nil || !strings.Contains(err.Error(), `"## Guarantees"`) {
		t.Errorf("missing section: %v", err)
	}
	if _, err := fill([]byte(strings.Replace(page, beginMarker, "", 1)), "new\n", sourceSections); err == nil || !strings.Contains(err.Error(), "markers") {
		t.Errorf("missing marker: %v", err)
	}
}

// The option table comes from the struct: keys, defaults, doc comments,
// inline structs, and Go field names written as keys.
func TestOptionTableFromStruct(t *testing.T) {
	for _, d := range registered() {
		if d.kind != "sink" || d.name != "iptables-file" {
			continue
		}
		table, err := optionTable(d, newDocReader(filepath.Join("..", "..")))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{
			"| `chain_in` | string | `PDSAFELIST-IN` | `chain_in` holds the ingress sets",
			"| `chain_out` | string | `PDSAFELIST-OUT` | `chain_in` holds",
			"| `path6` | string |  | `path` is the IPv4 file; `path6` the IPv6 one",
			"| `jump` | bool | `true` |",
			"--sink iptables-file:PATH",
		} {
			if !strings.Contains(table, want) {
				t.Errorf("table lacks %q:\n%s", want, table)
			}
		}
		return
	}
	t.Fatal("iptables-file is not registered")
}
