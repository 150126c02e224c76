// fizz-go-scan: finds the handlers of a Go function's package main, for runtimes/go/build.sh.
//
//	fizz-go-scan <source dir> <entry .go file to write> <entries .json to write>
//
// A handler is a top-level func whose signature is syntactically
// (http.ResponseWriter, *http.Request), or (context.Context, http.ResponseWriter, *http.Request)
// as Fission also accepts, with "net/http" and "context" under whatever names the file imports
// them. It writes fizz_entry.go (the map the runtime picks the entrypoint from, and the module
// path that panic messages are made relative to) and the list of handlers and other funcs with
// their file:line, which the warm instance reads to refuse a wrong entrypoint before the exec.
// Problems are printed as file:line: message, one per line, and exit 1.
package main

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"go/build"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

type entries struct {
	Module string `json:"module"`
	// Initializes: code other than the standard library's may run before serving (an init func
	// or a package-level var with an initializer in package main, or any package main imports
	// from outside the standard library: the user's own subpackages, module dependencies), so a
	// panic or log.Fatal can happen there: the warm instance then starts the watchdog that
	// reports it (see runtime/fizz_warm_handoff.go).
	Initializes bool              `json:"initializes"`
	Handlers    map[string]string `json:"handlers"`
	Funcs       map[string]string `json:"funcs"`
}

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: fizz-go-scan <dir> <entry.go> <entries.json>")
		os.Exit(2)
	}
	dir, entryFile, listFile := os.Args[1], os.Args[2], os.Args[3]
	module, err := modulePath(filepath.Join(dir, "go.mod"))
	if err != nil {
		fail(err.Error())
	}
	names, err := os.ReadDir(dir)
	if err != nil {
		fail(err.Error())
	}
	fset := token.NewFileSet()
	list := entries{Module: module, Handlers: map[string]string{}, Funcs: map[string]string{}}
	kinds := map[string]string{} // handler name -> how fizz_entry.go calls it
	var problems []string
	goFiles := 0
	for _, e := range names {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		if match, err := build.Default.MatchFile(dir, name); err != nil || !match {
			continue
		}
		if strings.HasPrefix(name, "fizz_") || strings.HasPrefix(name, "0fizz_") {
			problems = append(problems, name+": file names starting with fizz_ are reserved for the runtime")
			continue
		}
		goFiles++
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.SkipObjectResolution)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		if f.Name.Name != "main" {
			problems = append(problems, fmt.Sprintf("%s: package %s: a Go function is package main (as in Fission)", at(fset, f.Name.Pos()), f.Name.Name))
			continue
		}
		for _, imp := range f.Imports {
			if p, err := strconv.Unquote(imp.Path.Value); err == nil && !standard(p, module) {
				list.Initializes = true
			}
		}
		httpName, ctxName := importName(f, "net/http", "http"), importName(f, "context", "context")
		for _, d := range f.Decls {
			if gen, ok := d.(*ast.GenDecl); ok && gen.Tok == token.VAR {
				for _, spec := range gen.Specs {
					vs, ok := spec.(*ast.ValueSpec)
					if !ok {
						continue
					}
					if len(vs.Values) > 0 {
						list.Initializes = true
					}
					// Fission also loads handler variables: http.HandlerFunc and http.Handler.
					for i, id := range vs.Names {
						if id.Name == "_" || strings.HasPrefix(id.Name, "fizz") {
							continue
						}
						var value ast.Expr
						if len(vs.Values) == len(vs.Names) {
							value = vs.Values[i]
						}
						if kind := varKind(vs.Type, value, httpName); kind != "" {
							list.Handlers[id.Name], kinds[id.Name] = at(fset, id.Pos()), kind
						}
					}
				}
			}
			fn, ok := d.(*ast.FuncDecl)
			if ok && fn.Recv == nil && fn.Name.Name == "init" {
				list.Initializes = true
			}
			if !ok || fn.Recv != nil || fn.Name.Name == "_" || fn.Name.Name == "init" {
				continue
			}
			where := at(fset, fn.Name.Pos())
			if fn.Name.Name == "main" {
				problems = append(problems, where+": func main: the runtime provides main; a function only declares its handlers")
				continue
			}
			if strings.HasPrefix(fn.Name.Name, "fizz") {
				problems = append(problems, where+": names starting with fizz are reserved for the runtime")
				continue
			}
			switch signature(fn.Type, httpName, ctxName) {
			case 2:
				list.Handlers[fn.Name.Name], kinds[fn.Name.Name] = where, "func"
			case 3:
				list.Handlers[fn.Name.Name], kinds[fn.Name.Name] = where, "context"
			default:
				list.Funcs[fn.Name.Name] = where
			}
		}
	}
	if goFiles == 0 && len(problems) == 0 {
		problems = append(problems, "no .go files in the package")
	}
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintln(os.Stderr, p)
		}
		os.Exit(1)
	}
	if err := os.WriteFile(entryFile, []byte(entrySource(module, list.Handlers, kinds)), 0o644); err != nil {
		fail(err.Error())
	}
	data, _ := json.Marshal(list)
	if err := os.WriteFile(listFile, data, 0o644); err != nil {
		fail(err.Error())
	}
	handlers := make([]string, 0, len(list.Handlers))
	for n, where := range list.Handlers {
		handlers = append(handlers, n+" ("+where+")")
	}
	sort.Strings(handlers)
	fmt.Printf("handlers: %s\n", strings.Join(handlers, ", "))
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, msg)
	os.Exit(1)
}

func at(fset *token.FileSet, pos token.Pos) string {
	p := fset.Position(pos)
	return fmt.Sprintf("%s:%d", filepath.Base(p.Filename), p.Line)
}

func modulePath(gomod string) (string, error) {
	data, err := os.ReadFile(gomod)
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) >= 2 && fields[0] == "module" {
			if p, err := strconv.Unquote(fields[1]); err == nil {
				return p, nil
			}
			return fields[1], nil
		}
	}
	return "", fmt.Errorf("go.mod: no module line")
}

// standard: an import path of the standard library. Module paths have a dot in their first
// element (example.com/x), except the function's own module's (fizzfn/lib when it has no go.mod).
func standard(path, module string) bool {
	if path == module || strings.HasPrefix(path, module+"/") {
		return false
	}
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}

// importName is the name a file uses for an import path ("" when not imported or dot/blank).
func importName(f *ast.File, path, def string) string {
	for _, imp := range f.Imports {
		if p, _ := strconv.Unquote(imp.Path.Value); p == path {
			if imp.Name == nil {
				return def
			}
			if imp.Name.Name == "_" || imp.Name.Name == "." {
				return ""
			}
			return imp.Name.Name
		}
	}
	return ""
}

// signature: 2 for (http.ResponseWriter, *http.Request), 3 for the context.Context form, else 0.
func signature(t *ast.FuncType, httpName, ctxName string) int {
	if t.TypeParams != nil || (t.Results != nil && len(t.Results.List) > 0) || httpName == "" {
		return 0
	}
	var params []ast.Expr
	for _, field := range t.Params.List {
		n := max(len(field.Names), 1)
		for i := 0; i < n; i++ {
			params = append(params, field.Type)
		}
	}
	kind := len(params)
	if kind == 3 {
		if ctxName == "" || !isSel(params[0], ctxName, "Context") {
			return 0
		}
		params = params[1:]
	}
	if len(params) != 2 || !isSel(params[0], httpName, "ResponseWriter") {
		return 0
	}
	if star, ok := params[1].(*ast.StarExpr); !ok || !isSel(star.X, httpName, "Request") {
		return 0
	}
	return kind
}

func isSel(e ast.Expr, pkg, name string) bool {
	sel, ok := e.(*ast.SelectorExpr)
	if !ok || sel.Sel.Name != name {
		return false
	}
	id, ok := sel.X.(*ast.Ident)
	return ok && id.Name == pkg
}

// varKind: "var" for a variable of type http.HandlerFunc (declared so, or a conversion
// http.HandlerFunc(f)), "handler" for one declared http.Handler, else "".
func varKind(typ, value ast.Expr, httpName string) string {
	if httpName == "" {
		return ""
	}
	switch {
	case typ != nil && isSel(typ, httpName, "HandlerFunc"):
		return "var"
	case typ != nil && isSel(typ, httpName, "Handler"):
		return "handler"
	case typ == nil && value != nil:
		if call, ok := value.(*ast.CallExpr); ok && len(call.Args) == 1 && isSel(call.Fun, httpName, "HandlerFunc") {
			return "var"
		}
	}
	return ""
}

func entrySource(module string, handlers map[string]string, kinds map[string]string) string {
	names := make([]string, 0, len(handlers))
	for n := range handlers {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("// Code generated by runtimes/go/build.sh (fizz-go-scan); DO NOT EDIT.\n\npackage main\n\n")
	b.WriteString("import fizzhttp \"net/http\"\n\n")
	fmt.Fprintf(&b, "const fizzModulePath = %q\n\n", module)
	b.WriteString("var fizzEntries = map[string]fizzhttp.HandlerFunc{\n")
	for _, n := range names {
		switch kinds[n] {
		case "func":
			fmt.Fprintf(&b, "\t%q: %s,\n", n, n)
		// Variables are read at each call: an init may set them after this map is made.
		case "var":
			fmt.Fprintf(&b, "\t%q: func(w fizzhttp.ResponseWriter, r *fizzhttp.Request) { %s(w, r) },\n", n, n)
		case "handler":
			fmt.Fprintf(&b, "\t%q: func(w fizzhttp.ResponseWriter, r *fizzhttp.Request) { %s.ServeHTTP(w, r) },\n", n, n)
		default:
			fmt.Fprintf(&b, "\t%q: func(w fizzhttp.ResponseWriter, r *fizzhttp.Request) { %s(r.Context(), w, r) },\n", n, n)
		}
	}
	b.WriteString("}\n")
	return b.String()
}
