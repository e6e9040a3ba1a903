package config_test

import (
	"bytes"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/checkout-backend/checkout/internal/platform/config"
)

var updateDoc = flag.Bool("update-doc", false, "write docs/configuration.md (go generate ./internal/platform/config)")

const docPath = "../../../docs/configuration.md"

// TestConfigurationDoc: docs/configuration.md is what config.go says, generated from its
// groups, tags and comments; a change to a variable, a default or a comment that is not
// regenerated fails here.
func TestConfigurationDoc(t *testing.T) {
	got := configurationDoc(t)
	if *updateDoc {
		if err := os.WriteFile(docPath, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatalf("%v: run go generate ./internal/platform/config", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("docs/configuration.md is stale: run go generate ./internal/platform/config")
	}
}

// TestDefaults_EveryFieldAVariable_DefaultsValid: every field of every group is an
// environment variable with a comment, and the defaults pass Validate.
func TestDefaults_EveryFieldAVariable_DefaultsValid(t *testing.T) {
	t.Parallel()
	if err := config.Defaults().Validate(); err != nil {
		t.Fatalf("the defaults: %v", err)
	}
	seen := map[string]bool{}
	var walk func(reflect.Type)
	walk = func(typ reflect.Type) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			name, ok := f.Tag.Lookup("env")
			if !ok {
				if f.Type.Kind() != reflect.Struct {
					t.Errorf("%s.%s is neither a variable (env tag) nor a group", typ.Name(), f.Name)
					continue
				}
				walk(f.Type)
				continue
			}
			if seen[name] {
				t.Errorf("%s is read twice", name)
			}
			seen[name] = true
		}
	}
	walk(reflect.TypeOf(config.Config{}))
	for _, g := range parseGroups(t) {
		for _, v := range g.vars {
			if v.doc == "" {
				t.Errorf("%s has no comment", strings.Join(v.names, ", "))
			}
		}
	}
}

// TestNothingElseReadsTheEnvironment: the service's code reads its settings through
// this package only (the tools, tests and test nodes aside), so every variable is
// parsed, validated and documented here.
func TestNothingElseReadsTheEnvironment(t *testing.T) {
	t.Parallel()
	root := "../../.."
	outside := []string{"cmd/bench/", "cmd/chaos/", "cmd/ha/", "cmd/logscan/", "internal/testutil/", "internal/node/",
		"systest/", "tools/", "internal/platform/config/"}
	reads := regexp.MustCompile(`\bos\.(Getenv|LookupEnv|Environ)\(`)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".") && rel != "." {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(rel, ".go") || strings.HasSuffix(rel, "_test.go") {
			return nil
		}
		for _, o := range outside {
			if strings.HasPrefix(rel, o) {
				return nil
			}
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for i, line := range strings.Split(string(src), "\n") {
			if reads.MatchString(line) {
				t.Errorf("%s:%d reads the environment outside internal/platform/config: %s", rel, i+1, strings.TrimSpace(line))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

type variable struct {
	names []string
	def   string
	doc   string
}

type group struct {
	name, doc string
	vars      []variable
}

// parseGroups reads config.go: the top-level variables of Config, then one group per
// struct field of Config, in the order written.
func parseGroups(t *testing.T) []group {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "config.go", nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]*ast.GenDecl{}
	structs := map[string]*ast.StructType{}
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.TYPE {
			continue
		}
		for _, s := range gd.Specs {
			ts := s.(*ast.TypeSpec)
			if st, ok := ts.Type.(*ast.StructType); ok {
				types[ts.Name.Name], structs[ts.Name.Name] = gd, st
			}
		}
	}
	vars := func(st *ast.StructType) []variable {
		var out []variable
		for _, fld := range st.Fields.List {
			if fld.Tag == nil {
				continue
			}
			tag := reflect.StructTag(strings.Trim(fld.Tag.Value, "`"))
			name, ok := tag.Lookup("env")
			if !ok {
				continue
			}
			doc := strings.Join(strings.Fields(fld.Doc.Text()), " ")
			if doc == "" && len(out) > 0 {
				// A field without a comment shares the one above it (CertFile and KeyFile).
				out[len(out)-1].names = append(out[len(out)-1].names, name)
				continue
			}
			doc = meaning(doc, fld.Names[0].Name)
			out = append(out, variable{names: []string{name}, def: tag.Get("envDefault"), doc: doc})
		}
		return out
	}
	groups := []group{{name: "General", doc: "What the whole service reads.", vars: vars(structs["Config"])}}
	for _, fld := range structs["Config"].Fields.List {
		id, ok := fld.Type.(*ast.Ident)
		if !ok || structs[id.Name] == nil {
			continue
		}
		doc := strings.Join(strings.Fields(types[id.Name].Doc.Text()), " ")
		doc = strings.TrimPrefix(doc, id.Name+" is ")
		groups = append(groups, group{name: id.Name, doc: strings.ToUpper(doc[:1]) + doc[1:], vars: vars(structs[id.Name])})
	}
	return groups
}

var pairedName = regexp.MustCompile(`^and [A-Z]\w* `)

// meaning is a field's comment without the Go name it starts with, which the variable's
// name says better: "Addr is the listen address" becomes "The listen address".
func meaning(doc, field string) string {
	doc = strings.TrimPrefix(doc, field)
	doc = pairedName.ReplaceAllString(strings.TrimLeft(doc, ", "), "")
	for _, verb := range []string{"is ", "are "} {
		doc = strings.TrimPrefix(doc, verb)
	}
	if doc == "" {
		return doc
	}
	return strings.ToUpper(doc[:1]) + doc[1:]
}

// configurationDoc is docs/configuration.md.
func configurationDoc(t *testing.T) []byte {
	var b bytes.Buffer
	b.WriteString(`# Configuration

Every setting of the service is an environment variable, read, checked and given its
default in one place, ` + "`internal/platform/config`" + ` (one group per component). This page is
generated from that code by ` + "`go generate ./internal/platform/config`" + `; a test fails when
it is stale. ` + "`APP_ENV=production`" + ` refuses unsafe values ([Security](security.md#production-mode)).
Durations are Go durations (` + "`1m30s`" + `); lists are comma separated.

`)
	groups := parseGroups(t)
	b.WriteString("| group | variables |\n|---|---|\n")
	for _, g := range groups {
		var names []string
		for _, v := range g.vars {
			names = append(names, v.names...)
		}
		fmt.Fprintf(&b, "| [%s](#%s) | %d |\n", g.name, strings.ToLower(g.name), len(names))
	}
	for _, g := range groups {
		fmt.Fprintf(&b, "\n## %s\n\n%s\n\n| variable | default | meaning |\n|---|---|---|\n", g.name, g.doc)
		for _, v := range g.vars {
			names := make([]string, len(v.names))
			for i, n := range v.names {
				names[i] = "`" + n + "`"
			}
			def := ""
			if v.def != "" {
				def = "`" + v.def + "`"
			}
			fmt.Fprintf(&b, "| %s | %s | %s |\n", strings.Join(names, ", "), def, strings.ReplaceAll(v.doc, "|", `\|`))
		}
	}
	return b.Bytes()
}
