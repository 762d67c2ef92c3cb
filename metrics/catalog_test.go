package metrics

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestCatalogEntriesAreComplete(t *testing.T) {
	seen := map[string]bool{}
	for _, d := range catalog {
		if seen[d.Name] {
			t.Errorf("%s is listed twice", d.Name)
		}
		seen[d.Name] = true
		if d.Type.String() == "unknown" {
			t.Errorf("%s has no type", d.Name)
		}
		if d.Unit == "" || d.Meaning == "" || d.Source == "" {
			t.Errorf("%s lacks a unit, meaning or source: %+v", d.Name, d)
		}
		keys := map[string]bool{}
		for _, tag := range d.Tags {
			// Tag keys become Prometheus labels.
			if !labelName.MatchString(tag.Key) || keys[tag.Key] {
				t.Errorf("%s: tag %q is not a valid label name or is listed twice", d.Name, tag.Key)
			}
			keys[tag.Key] = true
		}
	}
}

func TestCatalogReturnsACopy(t *testing.T) {
	c := Catalog()
	c[0].Name = "changed"
	for i := range c {
		for j := range c[i].Tags {
			c[i].Tags[j].Key = "changed"
			for k := range c[i].Tags[j].Values {
				c[i].Tags[j].Values[k] = "changed"
			}
		}
	}
	for _, d := range Catalog() {
		if d.Name == "changed" || slices.ContainsFunc(d.Tags, func(t TagDescription) bool {
			return t.Key == "changed" || slices.Contains(t.Values, "changed")
		}) {
			t.Fatalf("changing Catalog's result changed the catalog: %+v", d)
		}
	}
}

// recordingMethods are the calls whose first argument is a metric's name, with the
// type a metric recorded through them has: a Buffer's Timer sums durations per
// flush, Timing on anything else records one operation.
var recordingMethods = map[string]Type{
	"Increment": TypeCounter,
	"Counter":   TypeCounter,
	"Gauge":     TypeGauge,
	"Timing":    TypeTimingObservation,
	"Timer":     TypeTimingTotal,
}

// recordedMetric is one place in the code that records a metric.
type recordedMetric struct {
	name, pos, pkg string
	typ            Type
	tags           []string
	// tagsUnknown is set when the call passes tags the scan cannot read, such as
	// a forwarded tags... slice.
	tagsUnknown bool
}

// skippedDirs hold no code that records creek's metrics: the backends themselves,
// examples and benchmarks recording their own, and integration tests.
var skippedDirs = []string{"metrics", "examples", "bench", "integration"}

// TestCatalogMatchesCode keeps the catalog from rotting: every metric name the
// code records is listed, with the type its call implies, its package and its tags,
// and every listed metric is still recorded somewhere.
func TestCatalogMatchesCode(t *testing.T) {
	recorded, problems := scanModule(t, "..")
	for _, p := range problems {
		t.Error(p)
	}
	byName := map[string]Description{}
	for _, d := range catalog {
		byName[d.Name] = d
	}
	found := map[string][]recordedMetric{}
	for _, r := range recorded {
		found[r.name] = append(found[r.name], r)
		d, ok := byName[r.name]
		if !ok {
			t.Errorf("%s records %q, which the catalog in metrics/catalog.go does not list", r.pos, r.name)
			continue
		}
		if d.Type != r.typ {
			t.Errorf("%s records %q as a %s, the catalog says %s", r.pos, r.name, r.typ, d.Type)
		}
		if r.pkg != d.Source && !strings.HasPrefix(r.pkg, d.Source+"/") {
			t.Errorf("%s records %q in package %s, the catalog says %s", r.pos, r.name, r.pkg, d.Source)
		}
		for _, k := range r.tags {
			if !slices.ContainsFunc(d.Tags, func(t TagDescription) bool { return t.Key == k }) {
				t.Errorf("%s records %q with tag %q, which the catalog does not list", r.pos, r.name, k)
			}
		}
	}
	if len(recorded) < len(catalog)/2 {
		t.Fatalf("the scan found only %d calls recording metrics; it no longer sees the code", len(recorded))
	}

	ownSource := ownLiterals(t)
	for _, d := range catalog {
		if d.Source == "metrics" {
			if !ownSource[d.Name] {
				t.Errorf("the catalog lists %q as the backends' own, but no file of package metrics names it", d.Name)
			}
			continue
		}
		calls := found[d.Name]
		if len(calls) == 0 {
			t.Errorf("the catalog lists %q, but nothing records it", d.Name)
			continue
		}
		used := map[string]bool{}
		for _, c := range calls {
			if c.tagsUnknown {
				used = nil
				break
			}
			for _, k := range c.tags {
				used[k] = true
			}
		}
		for _, tag := range d.Tags {
			if used != nil && !used[tag.Key] {
				t.Errorf("the catalog lists tag %q of %q, but no call records it", tag.Key, d.Name)
			}
		}
	}
}

// scanModule parses the non-test files of every package under root and returns the
// metrics they record, and the calls it could not read.
func scanModule(t *testing.T, root string) ([]recordedMetric, []string) {
	t.Helper()
	var recorded []recordedMetric
	var problems []string
	err := filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
		if err != nil || !e.IsDir() {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		base := e.Name()
		if rel != "." && (strings.HasPrefix(base, ".") || strings.HasPrefix(base, "_") || base == "testdata" || slices.Contains(skippedDirs, rel)) {
			return filepath.SkipDir
		}
		r, p := scanPackage(t, path, rel)
		recorded = append(recorded, r...)
		problems = append(problems, p...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return recorded, problems
}

func scanPackage(t *testing.T, dir, pkg string) ([]recordedMetric, []string) {
	t.Helper()
	fset := token.NewFileSet()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var files []*ast.File
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, e.Name()), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	consts := stringConsts(files)
	tagHelpers := tagHelpers(files)
	methods := maps.Clone(recordingMethods)
	forwarders := findForwarders(files, methods)

	var recorded []recordedMetric
	var problems []string
	for _, f := range files {
		for _, decl := range f.Decls {
			fn, _ := decl.(*ast.FuncDecl)
			ast.Inspect(decl, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok || len(call.Args) == 0 {
					return true
				}
				typ, ok := methods[calledName(call)]
				if !ok {
					return true
				}
				pos := fset.Position(call.Pos()).String()
				name, ok := stringValue(call.Args[0], consts)
				if !ok {
					if fn == nil || !forwarders[fn] {
						problems = append(problems, pos+": a metric is recorded under a name that is neither a string literal nor a constant; the catalog test cannot check it")
					}
					return true
				}
				r := recordedMetric{name: name, pos: pos, pkg: pkg, typ: typ}
				for _, a := range call.Args[1:] {
					if k, ok := tagKey(a, tagHelpers); ok {
						r.tags = append(r.tags, k)
					}
				}
				r.tagsUnknown = call.Ellipsis.IsValid()
				recorded = append(recorded, r)
				return true
			})
		}
	}
	return recorded, problems
}

// findForwarders adds to methods the functions of the package that pass one of
// their parameters on as the name of a recording call, such as the span buffer's
// wrapper that recovers from a panicking backend, and returns their declarations.
func findForwarders(files []*ast.File, methods map[string]Type) map[*ast.FuncDecl]bool {
	forwarders := map[*ast.FuncDecl]bool{}
	for changed := true; changed; {
		changed = false
		for _, f := range files {
			for _, decl := range f.Decls {
				fn, ok := decl.(*ast.FuncDecl)
				if !ok || fn.Body == nil || forwarders[fn] {
					continue
				}
				params := map[string]bool{}
				for _, field := range fn.Type.Params.List {
					for _, n := range field.Names {
						params[n.Name] = true
					}
				}
				ast.Inspect(fn.Body, func(n ast.Node) bool {
					call, ok := n.(*ast.CallExpr)
					if !ok || len(call.Args) == 0 {
						return true
					}
					typ, ok := methods[calledName(call)]
					if id, isIdent := call.Args[0].(*ast.Ident); ok && isIdent && params[id.Name] {
						methods[fn.Name.Name] = typ
						forwarders[fn] = true
						changed = true
						return false
					}
					return true
				})
			}
		}
	}
	return forwarders
}

func calledName(call *ast.CallExpr) string {
	switch f := call.Fun.(type) {
	case *ast.SelectorExpr:
		return f.Sel.Name
	case *ast.Ident:
		return f.Name
	}
	return ""
}

// stringConsts returns the package-level string constants given as literals.
func stringConsts(files []*ast.File) map[string]string {
	consts := map[string]string{}
	for _, f := range files {
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, n := range vs.Names {
					if i < len(vs.Values) {
						if s, ok := stringValue(vs.Values[i], nil); ok {
							consts[n.Name] = s
						}
					}
				}
			}
		}
	}
	return consts
}

func stringValue(e ast.Expr, consts map[string]string) (string, bool) {
	switch e := e.(type) {
	case *ast.BasicLit:
		if e.Kind == token.STRING {
			s, err := strconv.Unquote(e.Value)
			return s, err == nil
		}
	case *ast.Ident:
		s, ok := consts[e.Name]
		return s, ok
	}
	return "", false
}

// tagHelpers returns the functions of the package that return a Tag with a literal
// key, such as the span buffer's shardTag, by name.
func tagHelpers(files []*ast.File) map[string]string {
	helpers := map[string]string{}
	for _, f := range files {
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Body == nil || len(fn.Body.List) != 1 {
				continue
			}
			ret, ok := fn.Body.List[0].(*ast.ReturnStmt)
			if !ok || len(ret.Results) != 1 {
				continue
			}
			if k, ok := tagKey(ret.Results[0], nil); ok {
				helpers[fn.Name.Name] = k
			}
		}
	}
	return helpers
}

// tagKey returns the key of a metrics.Tag{Key: "..."} literal or of a call to a
// tag helper.
func tagKey(e ast.Expr, helpers map[string]string) (string, bool) {
	switch e := e.(type) {
	case *ast.CompositeLit:
		if !isTagType(e.Type) {
			return "", false
		}
		for _, elt := range e.Elts {
			if kv, ok := elt.(*ast.KeyValueExpr); ok {
				if id, ok := kv.Key.(*ast.Ident); ok && id.Name == "Key" {
					return stringValue(kv.Value, nil)
				}
			}
		}
	case *ast.CallExpr:
		if id, ok := e.Fun.(*ast.Ident); ok {
			k, ok := helpers[id.Name]
			return k, ok
		}
	}
	return "", false
}

func isTagType(e ast.Expr) bool {
	switch e := e.(type) {
	case *ast.SelectorExpr:
		return e.Sel.Name == "Tag"
	case *ast.Ident:
		return e.Name == "Tag"
	}
	return false
}

// ownLiterals returns the string literals of package metrics' non-test files, where
// the backends name the metrics they record about themselves.
func ownLiterals(t *testing.T) map[string]bool {
	t.Helper()
	lits := map[string]bool{}
	fset := token.NewFileSet()
	matches, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range matches {
		if strings.HasSuffix(path, "_test.go") || path == "catalog.go" {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if s, ok := stringValue(asExpr(n), nil); ok {
				lits[s] = true
			}
			return true
		})
	}
	return lits
}

func asExpr(n ast.Node) ast.Expr {
	if e, ok := n.(*ast.BasicLit); ok {
		return e
	}
	return nil
}
