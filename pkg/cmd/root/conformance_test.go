package root

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// sinkDir holds every sink package.
var sinkDir = filepath.Join("..", "..", "sink")

// Every registered sink type must pass the shared contract: some test
// file under pkg/sink builds a sinktest.Harness with that Type and calls
// sinktest.Run. A new sink without an adapter fails here.
func TestEverySinkTypeRunsConformance(t *testing.T) {
	proven, problems := harnessTypes(t, sinkDir)
	for _, p := range problems {
		t.Error(p)
	}
	for _, typ := range Registry().Types() {
		if len(proven[typ]) == 0 {
			t.Errorf("sink type %q has no conformance adapter: add a conformance_test.go to its package that calls sinktest.Run with sinktest.Harness{Type: %q, ...}", typ, typ)
		} else {
			t.Logf("%s: %s", typ, strings.Join(proven[typ], ", "))
		}
	}
	registered := Registry()
	for typ, files := range proven {
		if _, ok := registered[typ]; !ok {
			t.Errorf("%s: sinktest.Harness{Type: %q} names no registered sink type (known: %s)", strings.Join(files, ", "), typ, strings.Join(registered.Types(), ", "))
		}
	}
}

// The scan must see a missing adapter: one that never calls Run, and a
// Type that is not a literal, are both reported.
func TestConformanceScanFindsGaps(t *testing.T) {
	dir := t.TempDir()
	write := func(name, src string) {
		if err := writeFile(filepath.Join(dir, name), src); err != nil {
			t.Fatal(err)
		}
	}
	write("a/conformance_test.go", `package a
import "github.com/pdsafelist/pdsafelist/pkg/sink/sinktest"
var h = sinktest.Harness{Type: "a"}
`)
	write("b/conformance_test.go", `package b
import "github.com/pdsafelist/pdsafelist/pkg/sink/sinktest"
const typ = "b"
func TestX(t *testing.T) { sinktest.Run(t, sinktest.Harness{Type: typ}) }
`)
	write("c/conformance_test.go", `package c
import "github.com/pdsafelist/pdsafelist/pkg/sink/sinktest"
func TestX(t *testing.T) { sinktest.Run(t, sinktest.Harness{Type: "c"}) }
`)
	proven, problems := harnessTypes(t, dir)
	if len(proven["a"]) != 0 || len(proven["b"]) != 0 || len(proven["c"]) != 1 {
		t.Errorf("proven = %v; want only c", proven)
	}
	if len(problems) != 2 {
		t.Errorf("problems = %q; want the missing Run and the non-literal Type", problems)
	}
}

// harnessTypes maps each Type of a sinktest.Harness literal in a test file
// that also calls sinktest.Run to those files.
func harnessTypes(t *testing.T, root string) (map[string][]string, []string) {
	t.Helper()
	proven := map[string][]string{}
	var problems []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "sinktest" {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		var types []string
		runs := false
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CallExpr:
				runs = runs || isSel(n.Fun, "sinktest", "Run")
			case *ast.CompositeLit:
				if !isSel(n.Type, "sinktest", "Harness") {
					return true
				}
				for _, el := range n.Elts {
					kv, ok := el.(*ast.KeyValueExpr)
					if !ok || !isIdent(kv.Key, "Type") {
						continue
					}
					lit, ok := kv.Value.(*ast.BasicLit)
					if !ok || lit.Kind != token.STRING {
						problems = append(problems, path+": sinktest.Harness Type must be a string literal, so this test can read it")
						continue
					}
					s, _ := strconv.Unquote(lit.Value)
					types = append(types, s)
				}
			}
			return true
		})
		if len(types) > 0 && !runs {
			problems = append(problems, path+": builds a sinktest.Harness but never calls sinktest.Run")
			return nil
		}
		for _, typ := range types {
			if !slices.Contains(proven[typ], path) {
				proven[typ] = append(proven[typ], path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return proven, problems
}

func isSel(e ast.Expr, pkg, name string) bool {
	s, ok := e.(*ast.SelectorExpr)
	return ok && isIdent(s.X, pkg) && s.Sel.Name == name
}

func isIdent(e ast.Expr, name string) bool {
	id, ok := e.(*ast.Ident)
	return ok && id.Name == name
}

func writeFile(path, src string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(src), 0o644)
}
