package gqlhttp

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"
)

func TestNegotiate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		accept []string
		want   string // "" means 406
	}{
		{nil, MediaJSON},
		{[]string{""}, MediaJSON},
		{[]string{"*/*"}, MediaJSON},
		{[]string{"application/*"}, MediaJSON},
		{[]string{"application/json"}, MediaJSON},
		{[]string{"application/graphql-response+json"}, MediaGraphQLResponse},
		{[]string{"application/graphql-response+json, application/json;q=0.9"}, MediaGraphQLResponse},
		{[]string{"application/json, application/graphql-response+json;q=0.5"}, MediaJSON},
		{[]string{"application/json, application/graphql-response+json"}, MediaGraphQLResponse},
		{[]string{"application/json", "application/graphql-response+json"}, MediaGraphQLResponse},
		{[]string{"application/graphql-response+json;q=0, */*"}, MediaJSON},
		{[]string{"application/json, */*;q=0.1"}, MediaJSON},
		{[]string{"text/html, application/xhtml+xml"}, ""},
		{[]string{"application/json;q=0"}, ""},
		{[]string{"text/html, */*;q=0.8"}, MediaJSON},
		{[]string{"not a media type"}, MediaJSON},
	} {
		got, ok := Negotiate(tc.accept)
		if !ok {
			got = ""
		}
		if got != tc.want {
			t.Errorf("Accept %q: got %q, want %q", tc.accept, got, tc.want)
		}
	}
}

func shapeOf(t *testing.T, q string) Shape {
	t.Helper()
	doc, err := parser.ParseQuery(&ast.Source{Input: q})
	if err != nil {
		t.Fatal(err)
	}
	return Measure(doc, doc.Operations[0])
}

func TestMeasure(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		q    string
		want Shape
	}{
		{`{ a }`, Shape{Depth: 1, RootFields: 1, Fields: 1, Repeated: 1}},
		{`{ a { b { c } } d }`, Shape{Depth: 3, RootFields: 2, Fields: 4, Repeated: 1}},
		{`{ x: a y: a z: a { b } }`, Shape{Depth: 2, Aliases: 3, RootFields: 3, Fields: 4, Repeated: 1}},
		{`{ __typename a }`, Shape{Depth: 1, RootFields: 1, Fields: 2, Repeated: 1}},
		{`{ a a ... on Query { a b { c c } } ...F } fragment F on Query { a }`, Shape{Depth: 2, RootFields: 5, Fields: 7, Fragments: 1, Repeated: 3}},
		{`{ ...F ... on Query { c } } fragment F on Query { a { b } }`, Shape{Depth: 2, RootFields: 2, Fields: 3, Fragments: 1, Repeated: 1}},
		{`{ __schema { types { fields { type { ofType { ofType { name } } } } } } a }`, Shape{Depth: 1, RootFields: 2, Fields: 1, Schema: true, Repeated: 1, IntrospectionDepth: 7}},
		// A cycle (refused later by validation) counts as nothing rather than looping.
		{`{ ...A } fragment A on Query { a ...B } fragment B on Query { b ...A }`, Shape{Depth: 1, RootFields: 2, Fields: 2, Fragments: 2, Repeated: 1}},
	} {
		if got := shapeOf(t, tc.q); got != tc.want {
			t.Errorf("%s: got %+v, want %+v", tc.q, got, tc.want)
		}
	}
}

func TestMeasure_FragmentBombIsLinear(t *testing.T) {
	t.Parallel()
	// Each fragment spreads the next one twice: 2^40 fields once expanded.
	var b strings.Builder
	b.WriteString("{ a { ...F0 } }\n")
	for i := 0; i < 40; i++ {
		b.WriteString("fragment F" + strconv.Itoa(i) + " on A { ...F" + strconv.Itoa(i+1) + " ...F" + strconv.Itoa(i+1) + " }\n")
	}
	b.WriteString("fragment F40 on A { b }\n")
	s := shapeOf(t, b.String())
	if s.Fields < 1<<40 {
		t.Fatalf("fields %d, want at least 2^40", s.Fields)
	}
	if e := (Limits{}).Check(s, true); codeOf(e) != CodeComplexityLimitExceeded {
		t.Fatalf("check: %v, want %s", e, CodeComplexityLimitExceeded)
	}
}

func TestLimitsCheck(t *testing.T) {
	t.Parallel()
	l := Limits{MaxDepth: 3, MaxAliases: 2, MaxRootFields: 2, MaxComplexity: 10, MaxFragments: 2, MaxRepeatedField: 2}
	for _, tc := range []struct {
		s     Shape
		intro bool
		code  string
	}{
		{Shape{Depth: 3, Aliases: 2, RootFields: 2, Fields: 10}, false, ""},
		{Shape{Depth: 4}, false, CodeQueryTooDeep},
		{Shape{Aliases: 3}, false, CodeTooManyAliases},
		{Shape{RootFields: 3}, false, CodeTooManyRootFields},
		{Shape{Fields: 11}, false, CodeComplexityLimitExceeded},
		{Shape{Fragments: 3}, false, CodeComplexityLimitExceeded},
		{Shape{Repeated: 3}, false, CodeComplexityLimitExceeded},
		{Shape{Schema: true}, false, CodeIntrospectionDisabled},
		{Shape{Schema: true}, true, ""},
	} {
		e := l.Check(tc.s, tc.intro)
		if codeOf(e) != tc.code {
			t.Errorf("%+v: got %v, want code %q", tc.s, e, tc.code)
		}
		if e != nil && tc.code != CodeIntrospectionDisabled && (e.Extensions["limit"] == nil || e.Extensions["actual"] == nil) {
			t.Errorf("%+v: error without limit/actual: %v", tc.s, e.Extensions)
		}
	}
}

func TestParseManifest(t *testing.T) {
	t.Parallel()
	body := "query Products { products { edges { node { sku } } } }"
	sum := sha256Hex(body)
	s1 := sha1.Sum([]byte(body))
	sha1Hex := hex.EncodeToString(s1[:])

	apollo := `{"format":"apollo-persisted-query-manifest","version":1,"operations":[
		{"id":"` + sum + `","name":"Products","type":"query","body":"` + body + `"}]}`
	m, err := ParseManifest([]byte(apollo))
	if err != nil {
		t.Fatal(err)
	}
	if m.Format != ManifestFormatApollo || m.Len() != 1 || m.Operations[0].HashAlgorithm() != "sha256" {
		t.Fatalf("apollo manifest: %+v", m)
	}
	for _, id := range []string{sum, "sha256:" + sum, strings.ToUpper(sum)} {
		if d, ok := m.Document(id); !ok || d != body {
			t.Errorf("Document(%s) = %q, %v", id, d, ok)
		}
	}
	if !m.HasDocument(body) || m.HasDocument(body+" ") {
		t.Error("HasDocument matches exactly")
	}

	m, err = ParseManifest([]byte(`{"` + sha1Hex + `": "` + body + `"}`))
	if err != nil {
		t.Fatal(err)
	}
	if m.Format != ManifestFormatMap || m.Operations[0].HashAlgorithm() != "sha1" {
		t.Fatalf("map manifest: %+v", m)
	}

	for name, bad := range map[string]string{
		"not json":        `nope`,
		"wrong format":    `{"format":"other","version":1,"operations":[]}`,
		"wrong version":   `{"format":"apollo-persisted-query-manifest","version":2,"operations":[{"id":"a","body":"{a}"}]}`,
		"empty":           `{}`,
		"non-string":      `{"abc": 1}`,
		"no body":         `{"format":"apollo-persisted-query-manifest","version":1,"operations":[{"id":"a","body":""}]}`,
		"conflicting ids": `{"format":"apollo-persisted-query-manifest","version":1,"operations":[{"id":"a","body":"{a}"},{"id":"a","body":"{b}"}]}`,
	} {
		if _, err := ParseManifest([]byte(bad)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestCORS(t *testing.T) {
	t.Parallel()
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	h := CORS{AllowedOrigins: []string{"https://shop.example.com", "https://*.brand.test"}}.Handler(ok)
	serve := func(method, origin string, hdr map[string]string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, "/graphql", nil)
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	pre := map[string]string{"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type,authorization"}

	rec := serve(http.MethodOptions, "https://shop.example.com", pre)
	if rec.Code != http.StatusNoContent || rec.Header().Get("Access-Control-Allow-Origin") != "https://shop.example.com" ||
		!strings.Contains(rec.Header().Get("Access-Control-Allow-Methods"), "POST") ||
		!strings.Contains(rec.Header().Get("Access-Control-Allow-Headers"), "Authorization") ||
		!strings.Contains(rec.Header().Get("Access-Control-Allow-Headers"), "Content-Type") ||
		rec.Header().Get("Access-Control-Max-Age") == "" || rec.Header().Get("Access-Control-Allow-Credentials") != "" {
		t.Errorf("preflight from an allowed origin: %d %v", rec.Code, rec.Header())
	}
	if rec := serve(http.MethodOptions, "https://a.brand.test", pre); rec.Code != http.StatusNoContent || rec.Header().Get("Access-Control-Allow-Origin") != "https://a.brand.test" {
		t.Errorf("preflight from a wildcard subdomain: %d %v", rec.Code, rec.Header())
	}
	for _, o := range []string{"https://evil.example", "http://shop.example.com", "https://brand.test", "https://evilbrand.test"} {
		if rec := serve(http.MethodOptions, o, pre); rec.Code != http.StatusForbidden || rec.Header().Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("preflight from %s: %d %v", o, rec.Code, rec.Header())
		}
		if rec := serve(http.MethodPost, o, nil); rec.Code != http.StatusTeapot || rec.Header().Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("request from %s: %d %v", o, rec.Code, rec.Header())
		}
	}
	rec = serve(http.MethodPost, "https://shop.example.com", nil)
	if rec.Code != http.StatusTeapot || rec.Header().Get("Access-Control-Allow-Origin") != "https://shop.example.com" ||
		rec.Header().Get("Access-Control-Expose-Headers") != "X-Request-ID" || rec.Header().Get("Vary") != "Origin" {
		t.Errorf("request from an allowed origin: %d %v", rec.Code, rec.Header())
	}
	if rec := serve(http.MethodPost, "", nil); rec.Code != http.StatusTeapot || rec.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("request without Origin: %v", rec.Header())
	}
	if rec := serve(http.MethodOptions, "https://shop.example.com", nil); rec.Code != http.StatusTeapot {
		t.Errorf("an OPTIONS that is not a preflight goes through: %d", rec.Code)
	}
}

func TestValidateOrigins(t *testing.T) {
	t.Parallel()
	if err := ValidateOrigins([]string{"*", "https://shop.example.com", "http://localhost:3000", "https://*.example.com"}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"shop.example.com", "https://shop.example.com/path", "ftp://x", "https://"} {
		if err := ValidateOrigins([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestParseMode(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]Mode{"": ModeAllow, "off": ModeOff, "ALLOW": ModeAllow, " require ": ModeRequire} {
		if got, err := ParseMode(in); err != nil || got != want {
			t.Errorf("%q: %v %v", in, got, err)
		}
	}
	if _, err := ParseMode("on"); err == nil {
		t.Error("on accepted")
	}
	if _, err := NewPersisted(PersistedOptions{Mode: ModeRequire}); err == nil {
		t.Error("require without a manifest accepted")
	}
}

// BenchmarkGuard_MiBOfTokens measures the refusal of a 1 MiB document of tokens (half a
// million) by the token limit, before anything parses it.
func BenchmarkGuard_MiBOfTokens(b *testing.B) {
	g := NewGuard(Limits{}, false)
	doc := "{ " + strings.Repeat("a ", (1<<20)/2)
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		p := &graphql.RawParams{Query: doc}
		if e := g.MutateOperationParameters(context.Background(), p); codeOf(e) != CodeTooManyTokens {
			b.Fatalf("got %v", e)
		}
	}
}

// BenchmarkGuard_RepeatedFieldInUnselectedOperation measures the refusal of the
// document that made validation quadratic: query A{__typename} query B{__typename x 4000}.
func BenchmarkGuard_RepeatedFieldInUnselectedOperation(b *testing.B) {
	g := NewGuard(Limits{}, false)
	doc := "query A { __typename } query B { " + strings.Repeat("__typename ", 4000) + "}"
	for b.Loop() {
		g.shapes = lru.New[Shape](1000) // measure each time, as for a new document
		p := &graphql.RawParams{Query: doc, OperationName: "A"}
		if e := g.MutateOperationParameters(context.Background(), p); codeOf(e) != CodeComplexityLimitExceeded {
			b.Fatalf("got %v", e)
		}
	}
}
