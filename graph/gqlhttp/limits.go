package gqlhttp

import (
	"context"
	"crypto/sha256"
	"math"
	"strings"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"github.com/vektah/gqlparser/v2/lexer"
	"github.com/vektah/gqlparser/v2/parser"
)

// Defaults of Limits.
const (
	DefaultMaxComplexity = 5000
	DefaultMaxDepth      = 12
	DefaultMaxAliases    = 30
	DefaultMaxRootFields = 10
	// DefaultMaxFragments and DefaultMaxRepeatedField bound the document's structure:
	// validation compares fragments and same-named fields pairwise, so without them a
	// 170 KB document of 4,000 fragments costs seconds of CPU.
	DefaultMaxFragments     = 200
	DefaultMaxRepeatedField = 100
	// DefaultMaxFieldConflicts bounds the pairs of fields of one response name that
	// differ in field or arguments, over the whole document: validation compares such
	// fields pairwise and reports one error per pair, so 10 fragments of 100 such fields
	// were 49,510 errors and a 12 MB answer. A valid document has none in one selection
	// set, and few anywhere.
	DefaultMaxFieldConflicts = 100
	// DefaultMaxTokens bounds the lexical tokens of a document, counted before it is
	// parsed: the largest query a storefront sends has a few hundred, the introspection
	// query of GraphiQL under a thousand.
	DefaultMaxTokens = 10000
	// DefaultMaxIntrospectionDepth bounds the nesting under __schema and __type, with room
	// for the introspection query of graphql-js (nine levels of ofType under a field's type).
	DefaultMaxIntrospectionDepth = 16
)

// Limits bound what one request may ask for; a zero field takes its default.
type Limits struct {
	// MaxComplexity caps the operation's cost as gqlgen computes it from the schema's
	// complexity functions (lists count by their page size).
	MaxComplexity int
	// MaxDepth caps the nesting of fields (fragments expanded; introspection has its own).
	MaxDepth int
	// MaxIntrospectionDepth caps the nesting of fields under __schema and __type.
	MaxIntrospectionDepth int
	// MaxAliases caps the aliased fields (fragments expanded).
	MaxAliases int
	// MaxRootFields caps the fields of the operation's top selection (__typename aside).
	MaxRootFields int
	// MaxBodyBytes caps a POST body.
	MaxBodyBytes int64
	// MaxFragments caps the fragment definitions of a document.
	MaxFragments int
	// MaxRepeatedField caps how often one response name appears in one selection set
	// (inline fragments included).
	MaxRepeatedField int
	// MaxTokens caps the lexical tokens of a document; it is counted before the document
	// is parsed.
	MaxTokens int
	// MaxFieldConflicts caps the pairs of fields of one response name that differ in
	// field or arguments, counted over the whole document as written (fragments once each).
	MaxFieldConflicts int
}

// WithDefaults fills the zero fields with the defaults.
func (l Limits) WithDefaults() Limits {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.MaxComplexity, DefaultMaxComplexity)
	def(&l.MaxDepth, DefaultMaxDepth)
	def(&l.MaxAliases, DefaultMaxAliases)
	def(&l.MaxRootFields, DefaultMaxRootFields)
	def(&l.MaxFragments, DefaultMaxFragments)
	def(&l.MaxRepeatedField, DefaultMaxRepeatedField)
	def(&l.MaxTokens, DefaultMaxTokens)
	def(&l.MaxIntrospectionDepth, DefaultMaxIntrospectionDepth)
	def(&l.MaxFieldConflicts, DefaultMaxFieldConflicts)
	if l.MaxBodyBytes <= 0 {
		l.MaxBodyBytes = DefaultMaxBodyBytes
	}
	return l
}

// Shape is what an operation (or, from MeasureDocument, a whole document) asks for, its
// fragments expanded.
type Shape struct {
	Depth      int  // deepest nesting of fields outside introspection
	Aliases    int  // fields under an alias other than their name
	RootFields int  // fields of the top selection, __typename aside
	Fields     int  // fields in all, introspection aside (a lower bound of gqlgen's complexity)
	Schema     bool // selects __schema or __type
	Fragments  int  // fragment definitions in the document
	Repeated   int  // most appearances of one response name in one selection set
	// IntrospectionDepth is the deepest nesting under __schema or __type, counted from
	// the operation's root.
	IntrospectionDepth int
	// Conflicts counts the pairs of fields of one response name that differ in field or
	// arguments, over the whole document (MeasureDocument only): an upper bound of the
	// errors OverlappingFieldsCanBeMerged can report.
	Conflicts int
}

// maxOf is the shape whose every measure is the larger of s and o.
func (s Shape) maxOf(o Shape) Shape {
	return Shape{Depth: max(s.Depth, o.Depth), Aliases: max(s.Aliases, o.Aliases), RootFields: max(s.RootFields, o.RootFields),
		Fields: max(s.Fields, o.Fields), Schema: s.Schema || o.Schema, Fragments: max(s.Fragments, o.Fragments),
		Repeated: max(s.Repeated, o.Repeated), IntrospectionDepth: max(s.IntrospectionDepth, o.IntrospectionDepth),
		Conflicts: max(s.Conflicts, o.Conflicts)}
}

// Check returns the error of the first limit s breaks, or nil. Introspection false
// refuses operations that select __schema or __type.
func (l Limits) Check(s Shape, introspection bool) *gqlerror.Error {
	l = l.WithDefaults()
	switch {
	case s.Schema && !introspection:
		return newError(CodeIntrospectionDisabled, "introspection is disabled on this server: __schema and __type cannot be queried")
	case s.Depth > l.MaxDepth:
		return limitError(CodeQueryTooDeep, s.Depth, l.MaxDepth, "the operation nests fields %d deep, more than the limit of %d")
	case s.IntrospectionDepth > l.MaxIntrospectionDepth:
		return limitError(CodeQueryTooDeep, s.IntrospectionDepth, l.MaxIntrospectionDepth, "the operation nests introspection fields %d deep, more than the limit of %d")
	case s.Aliases > l.MaxAliases:
		return limitError(CodeTooManyAliases, s.Aliases, l.MaxAliases, "the operation uses %d aliases, more than the limit of %d")
	case s.RootFields > l.MaxRootFields:
		return limitError(CodeTooManyRootFields, s.RootFields, l.MaxRootFields, "the operation selects %d root fields, more than the limit of %d")
	case s.Fields > l.MaxComplexity:
		// Every field costs at least 1, so this refuses early (and cheaply, even for a
		// document whose fragments expand exponentially) what gqlgen's count would refuse.
		return limitError(CodeComplexityLimitExceeded, s.Fields, l.MaxComplexity, "the operation selects %d fields, more than the complexity limit of %d")
	case s.Fragments > l.MaxFragments:
		return limitError(CodeComplexityLimitExceeded, s.Fragments, l.MaxFragments, "the document defines %d fragments, more than the limit of %d")
	case s.Repeated > l.MaxRepeatedField:
		return limitError(CodeComplexityLimitExceeded, s.Repeated, l.MaxRepeatedField, "the operation selects one field %d times in one selection set, more than the limit of %d")
	case s.Conflicts > l.MaxFieldConflicts:
		return limitError(CodeTooManyFieldConflicts, s.Conflicts, l.MaxFieldConflicts,
			"the document has %d pairs of fields under one response name with different fields or arguments, more than the limit of %d: give them aliases")
	}
	return nil
}

// Measure computes the shape of op in doc. It works on a document that has only been
// parsed: fragment spreads are looked up by name, cycles count as nothing.
func Measure(doc *ast.QueryDocument, op *ast.OperationDefinition) Shape {
	m := measurer{doc: doc, memo: map[string]*setShape{}}
	return m.set(op.SelectionSet).shape(len(doc.Fragments))
}

// MeasureDocument computes the shape of a whole document: for each measure, the largest
// of every operation and every fragment definition (measured on its own, as validation
// walks it even when no operation selects it). Only one operation runs, but gqlgen
// parses and validates all of the document, so all of it is held to the limits.
func MeasureDocument(doc *ast.QueryDocument) Shape {
	m := measurer{doc: doc, memo: map[string]*setShape{}}
	var s Shape
	for _, op := range doc.Operations {
		s = s.maxOf(m.set(op.SelectionSet).shape(len(doc.Fragments)))
	}
	for _, f := range doc.Fragments {
		fs := m.fragment(f.Name)
		fs.top = 0 // a fragment's fields are root fields only where it is spread at the root
		s = s.maxOf(fs.shape(len(doc.Fragments)))
	}
	s.Fragments = len(doc.Fragments)
	s.Conflicts = conflicts(doc)
	return s
}

// conflicts counts, over every selection set of doc as written, the pairs of fields of
// one response name whose field name or arguments differ. Validation compares fields of
// one response name that can meet in one selection (fragments spread into it included),
// so it finds at most these pairs in conflict, each one error.
func conflicts(doc *ast.QueryDocument) int {
	byName := map[string]map[string]int{} // response name -> field and arguments -> count
	var walk func(ast.SelectionSet)
	walk = func(ss ast.SelectionSet) {
		for _, sel := range ss {
			switch s := sel.(type) {
			case *ast.Field:
				resp := s.Alias
				if resp == "" {
					resp = s.Name
				}
				var k strings.Builder
				k.WriteString(s.Name)
				for _, a := range s.Arguments {
					k.WriteString("\x00" + a.Name + ":" + a.Value.String())
				}
				if byName[resp] == nil {
					byName[resp] = map[string]int{}
				}
				byName[resp][k.String()]++
				walk(s.SelectionSet)
			case *ast.InlineFragment:
				walk(s.SelectionSet)
			}
		}
	}
	for _, op := range doc.Operations {
		walk(op.SelectionSet)
	}
	for _, f := range doc.Fragments {
		walk(f.SelectionSet)
	}
	pairs := func(n int) int { return n * (n - 1) / 2 } // n is at most the document's tokens
	total := 0
	for _, groups := range byName {
		n, same := 0, 0
		for _, c := range groups {
			n += c
			same += pairs(c)
		}
		total = satAdd(total, pairs(n)-same)
	}
	return total
}

type setShape struct {
	depth, aliases, fields, top, repeated, introDepth int
	schema                                            bool
}

func (s setShape) shape(fragments int) Shape {
	return Shape{Depth: s.depth, Aliases: s.aliases, RootFields: s.top, Fields: s.fields, Schema: s.schema,
		Fragments: fragments, Repeated: s.repeated, IntrospectionDepth: s.introDepth}
}

func (s *setShape) merge(c setShape) {
	s.depth = max(s.depth, c.depth)
	s.introDepth = max(s.introDepth, c.introDepth)
	s.aliases = satAdd(s.aliases, c.aliases)
	s.fields = satAdd(s.fields, c.fields)
	s.top = satAdd(s.top, c.top)
	s.repeated = max(s.repeated, c.repeated)
	s.schema = s.schema || c.schema
}

type measurer struct {
	doc  *ast.QueryDocument
	memo map[string]*setShape // by fragment name; nil while being measured (a cycle)
}

// set measures a selection set.
func (m *measurer) set(ss ast.SelectionSet) setShape {
	var r setShape
	names := map[string]int{}
	m.level(ss, &r, names)
	for _, n := range names {
		r.repeated = max(r.repeated, n)
	}
	return r
}

// level adds the selections of one level to r, inline fragments being of the same level,
// and counts their response names in names (fragment spreads are measured on their own,
// once each).
func (m *measurer) level(ss ast.SelectionSet, r *setShape, names map[string]int) {
	for _, sel := range ss {
		switch s := sel.(type) {
		case *ast.Field:
			resp := s.Alias
			if resp == "" {
				resp = s.Name
			}
			names[resp]++
			c := m.set(s.SelectionSet)
			if s.Alias != "" && s.Alias != s.Name {
				r.aliases = satAdd(r.aliases, 1)
			}
			r.aliases = satAdd(r.aliases, c.aliases)
			r.repeated = max(r.repeated, c.repeated)
			if s.Name == "__schema" || s.Name == "__type" {
				// Everything under it is introspection: its own depth limit, no cost.
				r.schema = true
				r.top = satAdd(r.top, 1)
				r.introDepth = max(r.introDepth, max(c.depth, c.introDepth)+1)
				continue
			}
			if c.introDepth > 0 {
				r.introDepth = max(r.introDepth, c.introDepth+1)
			}
			r.depth = max(r.depth, c.depth+1)
			r.fields = satAdd(satAdd(r.fields, 1), c.fields)
			if s.Name != "__typename" {
				r.top = satAdd(r.top, 1)
			}
			r.schema = r.schema || c.schema
		case *ast.InlineFragment:
			m.level(s.SelectionSet, r, names)
		case *ast.FragmentSpread:
			r.merge(m.fragment(s.Name))
		}
	}
}

func (m *measurer) fragment(name string) setShape {
	if s, seen := m.memo[name]; seen {
		if s == nil {
			return setShape{}
		}
		return *s
	}
	f := m.doc.Fragments.ForName(name)
	if f == nil {
		return setShape{}
	}
	m.memo[name] = nil
	s := m.set(f.SelectionSet)
	m.memo[name] = &s
	return s
}

func satAdd(a, b int) int {
	if a > math.MaxInt-b {
		return math.MaxInt
	}
	return a + b
}

// Guard is a gqlgen extension enforcing Limits (complexity apart: see ComplexityLimit) and
// the introspection switch. It runs before gqlgen parses and validates the document: it
// counts the document's tokens with gqlparser's lexer (nothing is parsed past the token
// limit), then parses it and measures all of it (every operation and fragment, as
// validation walks them all), remembering the shapes of recent documents. So a huge,
// deep or repetitive document is refused before validation spends time on it.
type Guard struct {
	limits        Limits
	introspection bool
	shapes        *lru.LRU[Shape]
}

var _ interface {
	graphql.HandlerExtension
	graphql.OperationParameterMutator
} = (*Guard)(nil)

// NewGuard returns a Guard for l; introspection false refuses __schema and __type.
func NewGuard(l Limits, introspection bool) *Guard {
	return &Guard{limits: l.WithDefaults(), introspection: introspection, shapes: lru.New[Shape](1000)}
}

// ExtensionName names the extension for gqlgen.
func (g *Guard) ExtensionName() string { return "GraphQLLimits" }

// Validate accepts any schema.
func (g *Guard) Validate(graphql.ExecutableSchema) error { return nil }

// MutateOperationParameters refuses a document beyond a limit.
func (g *Guard) MutateOperationParameters(ctx context.Context, p *graphql.RawParams) *gqlerror.Error {
	if p.Query == "" {
		return nil
	}
	sum := sha256.Sum256([]byte(p.Query))
	key := string(sum[:])
	shape, ok := g.shapes.Get(ctx, key)
	if !ok {
		if tooManyTokens(p.Query, g.limits.MaxTokens) {
			e := newError(CodeTooManyTokens, "the document has more than %d tokens, the limit", g.limits.MaxTokens)
			e.Extensions["limit"] = g.limits.MaxTokens
			return e
		}
		doc, err := parser.ParseQuery(&ast.Source{Input: p.Query})
		if err != nil {
			return nil // gqlgen answers the parse error
		}
		shape = MeasureDocument(doc)
		g.shapes.Add(ctx, key, shape)
	}
	return g.limits.Check(shape, g.introspection)
}

// tooManyTokens reads at most limit+1 tokens of doc. A lexical error stops the count:
// the parser reports it.
func tooManyTokens(doc string, limit int) bool {
	l := lexer.New(&ast.Source{Input: doc})
	for n := 0; ; n++ {
		tok, err := l.ReadToken()
		if err != nil || tok.Kind == lexer.EOF {
			return false
		}
		if n >= limit {
			return true
		}
	}
}

// ComplexityLimit is gqlgen's extension.FixedComplexityLimit (whose code is
// COMPLEXITY_LIMIT_EXCEEDED), its error also carrying extensions.limit and actual.
type ComplexityLimit struct {
	*extension.ComplexityLimit
}

// NewComplexityLimit caps the complexity of an operation at limit.
func NewComplexityLimit(limit int) ComplexityLimit {
	return ComplexityLimit{extension.FixedComplexityLimit(limit)}
}

// MutateOperationContext refuses an operation over the limit.
func (c ComplexityLimit) MutateOperationContext(ctx context.Context, opCtx *graphql.OperationContext) *gqlerror.Error {
	err := c.ComplexityLimit.MutateOperationContext(ctx, opCtx)
	if err != nil {
		if s, ok := opCtx.Stats.GetExtension("ComplexityLimit").(*extension.ComplexityStats); ok {
			err.Extensions["limit"] = s.ComplexityLimit
			err.Extensions["actual"] = s.Complexity
		}
	}
	return err
}
