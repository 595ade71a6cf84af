package proxyless

import (
	"go/ast"
	"go/doc"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// needAgent lists the entry points whose Examples cannot run: they need a Consul agent, which
// an Example cannot start (it has no testing.T to skip with when the binary is missing).
// Their Examples are compiled but not run; the integration tests make the same calls against
// a real agent. reload.Consul's Example runs, showing what happens while the agent is down.
var needAgent = map[string]bool{
	"discovery/consul.New":         true,
	"discovery/consul.KeepPassing": true,
	"discovery/consul.WatchChains": true,
	"discovery/consul/connect.New": true,
}

// Every public package's entry points have a checked Example: each constructor (a function
// go/doc files under the type it returns, reload.File for instance) and each function whose
// name starts with New or Watch needs an Example named after it (ExampleNewX, or
// ExampleNewX_suffix) with an // Output: comment, so that `go test` runs it; those of
// needAgent need an Example all the same.
func TestEntryPointsHaveExamples(t *testing.T) {
	dirs := publicPackageDirs(t)
	if len(dirs) < 10 {
		t.Fatalf("found only %d public packages: %v", len(dirs), dirs)
	}
	var checked int
	seen := map[string]bool{}
	for _, dir := range dirs {
		pkg := docPackage(t, dir)
		for _, f := range entryPoints(pkg) {
			checked++
			name := filepath.ToSlash(dir) + "." + f.Name
			seen[name] = true
			switch {
			case needAgent[name] && len(f.Examples) == 0:
				t.Errorf("%s has no Example%s", name, f.Name)
			case !needAgent[name] && !hasCheckedExample(f):
				t.Errorf("%s has no Example%s with an // Output: comment", name, f.Name)
			}
		}
	}
	if checked < 20 {
		t.Fatalf("only %d entry points found: the walk is broken", checked)
	}
	for name := range needAgent {
		if !seen[name] {
			t.Errorf("needAgent lists %s, which is not an entry point (any more)", name)
		}
	}
}

// publicPackageDirs lists the module's package directories users import: everything but
// internal/, examples/, tools/ and benchmarks/ (modules or programs of their own), and
// hidden or testdata directories.
func publicPackageDirs(t *testing.T) []string {
	t.Helper()
	skip := []string{"internal", "examples", "tools", "benchmarks", "testdata"}
	var dirs []string
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if path != "." && (strings.HasPrefix(d.Name(), ".") || strings.HasPrefix(d.Name(), "_") || slices.Contains(skip, d.Name())) {
			return filepath.SkipDir
		}
		if path == "." {
			return nil
		}
		if m, _ := filepath.Glob(filepath.Join(path, "*.go")); len(m) > 0 {
			dirs = append(dirs, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return dirs
}

// docPackage reads dir's package, with its tests (where the examples are), through go/doc.
func docPackage(t *testing.T, dir string) *doc.Package {
	t.Helper()
	fset := token.NewFileSet()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var files []*ast.File
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, e.Name()), nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	pkg, err := doc.NewFromFiles(fset, files, "github.com/proxyless/proxyless/"+filepath.ToSlash(dir))
	if err != nil {
		t.Fatal(err)
	}
	return pkg
}

// entryPoints returns pkg's functions named New... or Watch..., and its constructors that
// return a pointer to one of its struct types (route.Compile's *Table, reload.File's
// *FileWatcher). Constructors of option interfaces (WithX) and of value types are left out,
// and so are the accessors XFromContext, which go/doc files as constructors too.
func entryPoints(pkg *doc.Package) []*doc.Func {
	var fs []*doc.Func
	named := func(f *doc.Func) bool { return strings.HasPrefix(f.Name, "New") || strings.HasPrefix(f.Name, "Watch") }
	for _, f := range pkg.Funcs {
		if named(f) {
			fs = append(fs, f)
		}
	}
	for _, typ := range pkg.Types {
		for _, f := range typ.Funcs {
			if named(f) || (returnsStructPointer(f, typ) && !strings.HasSuffix(f.Name, "FromContext")) {
				fs = append(fs, f)
			}
		}
	}
	return fs
}

// returnsStructPointer reports whether f's first result is *T, for typ T a struct type.
func returnsStructPointer(f *doc.Func, typ *doc.Type) bool {
	spec, ok := typ.Decl.Specs[0].(*ast.TypeSpec)
	if len(typ.Decl.Specs) != 1 || !ok {
		return false
	}
	if _, isStruct := spec.Type.(*ast.StructType); !isStruct {
		return false
	}
	res := f.Decl.Type.Results
	if res == nil || len(res.List) == 0 {
		return false
	}
	star, ok := res.List[0].Type.(*ast.StarExpr)
	if !ok {
		return false
	}
	id, ok := star.X.(*ast.Ident)
	return ok && id.Name == typ.Name
}

// hasCheckedExample reports whether f has an Example of its own whose output is checked.
func hasCheckedExample(f *doc.Func) bool {
	return slices.ContainsFunc(f.Examples, func(ex *doc.Example) bool {
		return ex.Output != "" || ex.EmptyOutput
	})
}
