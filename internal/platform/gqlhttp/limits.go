package gqlhttp

import (
	"context"
	"crypto/sha256"
	"math"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
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
)

// Limits bound what one request may ask for; a zero field takes its default.
type Limits struct {
	// MaxComplexity caps the operation's cost as gqlgen computes it from the schema's
	// complexity functions (lists count by their page size).
	MaxComplexity int
	// MaxDepth caps the nesting of fields (fragments expanded; introspection excluded).
	MaxDepth int
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
	if l.MaxBodyBytes <= 0 {
		l.MaxBodyBytes = DefaultMaxBodyBytes
	}
	return l
}

// Shape is what an operation asks for, its fragments expanded.
type Shape struct {
	Depth      int  // deepest nesting of fields
	Aliases    int  // fields under an alias other than their name
	RootFields int  // fields of the top selection, __typename aside
	Fields     int  // fields in all (a lower bound of gqlgen's complexity)
	Schema     bool // selects __schema or __type (their subtrees are not counted)
	Fragments  int  // fragment definitions in the document
	Repeated   int  // most appearances of one response name in one selection set
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
	}
	return nil
}

// Measure computes the shape of op in doc. It works on a document that has only been
// parsed: fragment spreads are looked up by name, cycles count as nothing.
func Measure(doc *ast.QueryDocument, op *ast.OperationDefinition) Shape {
	m := measurer{doc: doc, memo: map[string]*setShape{}}
	s := m.set(op.SelectionSet)
	return Shape{Depth: s.depth, Aliases: s.aliases, RootFields: s.top, Fields: s.fields, Schema: s.schema,
		Fragments: len(doc.Fragments), Repeated: s.repeated}
}

type setShape struct {
	depth, aliases, fields, top, repeated int
	schema                                bool
}

func (s *setShape) merge(c setShape) {
	s.depth = max(s.depth, c.depth)
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
			if s.Name == "__schema" || s.Name == "__type" {
				r.schema = true
				r.top = satAdd(r.top, 1)
				continue
			}
			c := m.set(s.SelectionSet)
			r.depth = max(r.depth, c.depth+1)
			r.fields = satAdd(satAdd(r.fields, 1), c.fields)
			r.aliases = satAdd(r.aliases, c.aliases)
			if s.Alias != "" && s.Alias != s.Name {
				r.aliases = satAdd(r.aliases, 1)
			}
			if s.Name != "__typename" {
				r.top = satAdd(r.top, 1)
			}
			r.repeated = max(r.repeated, c.repeated)
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
// the introspection switch. It runs before gqlgen parses and validates the document (it
// parses the document itself, remembering the shapes of recent ones), so a huge or deeply
// nested document is refused before validation spends time on it.
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

// MutateOperationParameters refuses an operation beyond a limit.
func (g *Guard) MutateOperationParameters(ctx context.Context, p *graphql.RawParams) *gqlerror.Error {
	if p.Query == "" {
		return nil
	}
	sum := sha256.Sum256([]byte(p.Query))
	key := string(sum[:]) + p.OperationName
	shape, ok := g.shapes.Get(ctx, key)
	if !ok {
		doc, err := parser.ParseQuery(&ast.Source{Input: p.Query})
		if err != nil {
			return nil // gqlgen answers the parse error
		}
		op := selectOperation(doc, p.OperationName)
		if op == nil {
			return nil // and this one
		}
		shape = Measure(doc, op)
		g.shapes.Add(ctx, key, shape)
	}
	return g.limits.Check(shape, g.introspection)
}

func selectOperation(doc *ast.QueryDocument, name string) *ast.OperationDefinition {
	if name == "" {
		if len(doc.Operations) == 1 {
			return doc.Operations[0]
		}
		return nil
	}
	return doc.Operations.ForName(name)
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
