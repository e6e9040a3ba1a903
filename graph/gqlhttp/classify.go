package gqlhttp

import (
	"bytes"
	"io"
	"net/http"
	"strings"

	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/lexer"

	"github.com/checkout-backend/checkout/internal/platform/overload"
)

// Classify returns the shedder's classifier (overload.Options.Classify) of GraphQL over
// HTTP requests: WebSocket upgrades are Stream; GET is Read (mutations are refused over
// GET); a POST is classified from its JSON body by tokenizing the selected operation (no
// parsing or validation): a mutation with a root checkout field is Checkout, another
// mutation Other, a query Read. The shedder has read the body whole before (a body
// still on the wire is read here, at most DefaultMaxBodyBytes of it); the classifier
// reads it as the transport does (checkBody, then gqlgen's decoding), so it classifies
// the very operation gqlgen will run, and a body the transport will refuse is Other. A
// persisted query sent by hash alone is looked up with lookup (nil: it is Other). The
// body is given back to the next handler intact. The cost is ClassifyQuery's (GET's
// from its query parameter); what cannot be read costs one.
func Classify(lookup func(sha256Hash string) (query string, ok bool)) func(*http.Request) (overload.Class, overload.Cost) {
	return func(r *http.Request) (overload.Class, overload.Cost) {
		if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			return overload.Stream, overload.Cost{}
		}
		switch r.Method {
		case http.MethodGet:
			q := r.URL.Query()
			_, cost := ClassifyQuery(q.Get("query"), q.Get("operationName"))
			return overload.Read, cost
		case http.MethodPost:
		default:
			return overload.Other, overload.Cost{}
		}
		if r.Body == nil || r.Body == http.NoBody {
			return overload.Other, overload.Cost{}
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, DefaultMaxBodyBytes+1))
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(body), r.Body), r.Body}
		if err != nil || len(body) > DefaultMaxBodyBytes {
			return overload.Other, overload.Cost{}
		}
		body, gerr := checkBody(body)
		if gerr != nil {
			return overload.Other, overload.Cost{}
		}
		p, err := decodeParams(body)
		if err != nil {
			return overload.Other, overload.Cost{}
		}
		query := p.Query
		if query == "" && lookup != nil {
			if hash, ok, gerr := persistedQueryOf(p.Extensions); ok && gerr == nil {
				query, _ = lookup(hash)
			}
		}
		return ClassifyQuery(query, p.OperationName)
	}
}

// ClassifyQuery classifies the operation of document named operationName (the first
// one when ""), reading tokens only, and counts what it costs the client's rate: its
// root fields (__typename aside), and the checkout root fields of a mutation. Inline
// fragments and fragment spreads at the root are looked through (each fragment counted
// once), directives ignored: a field under @skip still counts, so the count may be high,
// never low, for a document that parses. A document that does not tokenize is Other and
// costs one.
func ClassifyQuery(document, operationName string) (overload.Class, overload.Cost) {
	l := lexer.New(&ast.Source{Input: document})
	var (
		defs     []tokenDefinition
		cur      tokenDefinition
		named    bool   // the current definition's name was read (or cannot come)
		braces   []bool // open selection sets: true a field's (or the definition's), false an inline fragment's
		level    int    // the selection sets of fields open (1: the definition's root)
		args     int    // argument or variable nesting
		afterAt  bool   // the next name is a directive's
		spread   bool   // "..." was read: a fragment's name, "on", "@" or "{" follows
		inline   bool   // the next "{" opens an inline fragment
		typeCond bool   // the next name is a type condition
		selected = -1   // the definition that runs
	)
	for {
		tok, err := l.ReadToken()
		if err != nil {
			return overload.Other, overload.Cost{}
		}
		if tok.Kind == lexer.EOF {
			break
		}
		switch tok.Kind {
		case lexer.ParenL:
			args++
			continue
		case lexer.ParenR:
			args--
			continue
		}
		if args > 0 {
			continue
		}
		switch tok.Kind {
		case lexer.At:
			afterAt = true
			if spread {
				spread, inline = false, true // ... @include(if: $x) { ... }
			}
		case lexer.Spread:
			if level == 1 {
				spread = true
			}
		case lexer.BraceL:
			if len(braces) == 0 && cur.kind == "" {
				cur.kind = "query" // shorthand { ... }
			}
			named = true
			field := !(spread || inline)
			spread, inline, typeCond = false, false, false
			braces = append(braces, field)
			if field {
				level++
			}
		case lexer.BraceR:
			if len(braces) == 0 {
				return overload.Other, overload.Cost{}
			}
			if braces[len(braces)-1] {
				level--
			}
			braces = braces[:len(braces)-1]
			if len(braces) > 0 {
				continue
			}
			defs = append(defs, cur)
			if selected < 0 && cur.kind != "fragment" && (operationName == "" || operationName == cur.name) {
				selected = len(defs) - 1
				if len(cur.spreads) == 0 {
					return cost(defs, selected)
				}
			}
			cur, named = tokenDefinition{}, false
		case lexer.Name:
			switch {
			case afterAt:
				afterAt = false
			case len(braces) == 0 && cur.kind == "":
				cur.kind = tok.Value
			case len(braces) == 0 && !named:
				cur.name, named = tok.Value, true
			case level != 1:
			case typeCond:
				typeCond, inline = false, true
			case spread && tok.Value == "on":
				spread, typeCond = false, true
			case spread:
				spread = false
				cur.spreads = append(cur.spreads, tok.Value)
			default:
				cur.fields = append(cur.fields, tok.Value)
			}
		case lexer.Colon:
			if level == 1 && len(cur.fields) > 0 {
				cur.fields = cur.fields[:len(cur.fields)-1] // that was an alias
			}
		}
	}
	if selected < 0 {
		return overload.Other, overload.Cost{}
	}
	return cost(defs, selected)
}

// tokenDefinition is a top-level definition of a document as ClassifyQuery reads it.
type tokenDefinition struct {
	kind, name string
	fields     []string // root field names (an alias is dropped at its colon)
	spreads    []string // fragments spread at the root
}

// cost classifies defs[op] and counts its root fields, looking through the fragments it
// spreads (each once: fields spread twice run once).
func cost(defs []tokenDefinition, op int) (overload.Class, overload.Cost) {
	fragments := map[string]*tokenDefinition{}
	for i := range defs {
		if d := &defs[i]; d.kind == "fragment" && fragments[d.name] == nil {
			fragments[d.name] = d
		}
	}
	var c overload.Cost
	seen := map[string]bool{}
	var add func(d *tokenDefinition)
	add = func(d *tokenDefinition) {
		for _, f := range d.fields {
			switch f {
			case "__typename":
				continue
			case "checkout":
				c.Checkouts++
			}
			c.Operations++
		}
		for _, name := range d.spreads {
			if f := fragments[name]; f != nil && !seen[name] {
				seen[name] = true
				add(f)
			}
		}
	}
	d := &defs[op]
	add(d)
	switch d.kind {
	case "query":
		return overload.Read, overload.Cost{Operations: c.Operations}
	case "subscription":
		return overload.Stream, overload.Cost{Operations: c.Operations}
	case "mutation":
		if c.Checkouts > 0 {
			return overload.Checkout, c
		}
		return overload.Other, c
	}
	return overload.Other, overload.Cost{Operations: c.Operations}
}
