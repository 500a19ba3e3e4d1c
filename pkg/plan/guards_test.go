package plan

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestEveryGuardListed reads the module's source for every GuardError
// literal and checks that the guard it names is in Guards, so metrics
// report it at 0 before it first refuses.
func TestEveryGuardListed(t *testing.T) {
	fset := token.NewFileSet()
	consts := map[string]Guard{}
	var literals []ast.Expr
	var where []string
	root := filepath.Join("..", "..")
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".") && path != root) {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.ValueSpec:
				// The Guard constants, wherever they are declared.
				if id, ok := n.Type.(*ast.Ident); ok && id.Name == "Guard" && f.Name.Name == "plan" {
					for i, name := range n.Names {
						if lit, ok := n.Values[i].(*ast.BasicLit); ok {
							v, _ := strconv.Unquote(lit.Value)
							consts[name.Name] = Guard(v)
						}
					}
				}
			case *ast.CompositeLit:
				if !isGuardError(n.Type) {
					return true
				}
				for _, el := range n.Elts {
					kv, ok := el.(*ast.KeyValueExpr)
					if k, _ := kv.Key.(*ast.Ident); ok && k != nil && k.Name == "Guard" {
						literals = append(literals, kv.Value)
						where = append(where, fset.Position(kv.Pos()).String())
					}
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(literals) < 5 {
		t.Fatalf("found %d GuardError literals; the scan is broken", len(literals))
	}
	for i, e := range literals {
		var g Guard
		switch e := e.(type) {
		case *ast.BasicLit:
			v, _ := strconv.Unquote(e.Value)
			g = Guard(strings.ReplaceAll(v, "-", "_"))
		case *ast.Ident:
			g = consts[e.Name]
		case *ast.SelectorExpr:
			g = consts[e.Sel.Name]
		default:
			// A guard computed at run time cannot be checked here.
			t.Errorf("%s: guard is not a constant", where[i])
			continue
		}
		if !slices.Contains(Guards, g) {
			t.Errorf("%s: guard %q is not in plan.Guards", where[i], string(g))
		}
	}
	for name, g := range consts {
		if !slices.Contains(Guards, g) {
			t.Errorf("constant %s (%q) is not in plan.Guards", name, string(g))
		}
	}
}

func isGuardError(e ast.Expr) bool {
	if u, ok := e.(*ast.UnaryExpr); ok {
		e = u.X
	}
	switch e := e.(type) {
	case *ast.Ident:
		return e.Name == "GuardError"
	case *ast.SelectorExpr:
		return e.Sel.Name == "GuardError"
	}
	return false
}
