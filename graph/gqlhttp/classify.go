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
// body is given back to the next handler intact.
func Classify(lookup func(sha256Hash string) (query string, ok bool)) func(*http.Request) overload.Class {
	return func(r *http.Request) overload.Class {
		if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			return overload.Stream
		}
		switch r.Method {
		case http.MethodGet:
			return overload.Read
		case http.MethodPost:
		default:
			return overload.Other
		}
		if r.Body == nil || r.Body == http.NoBody {
			return overload.Other
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, DefaultMaxBodyBytes+1))
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(body), r.Body), r.Body}
		if err != nil || len(body) > DefaultMaxBodyBytes {
			return overload.Other
		}
		body, gerr := checkBody(body)
		if gerr != nil {
			return overload.Other
		}
		p, err := decodeParams(body)
		if err != nil {
			return overload.Other
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
// one when ""), reading tokens only.
func ClassifyQuery(document, operationName string) overload.Class {
	l := lexer.New(&ast.Source{Input: document})
	var (
		kind, name  string   // the top-level definition being read
		expectName  bool     // the next top-level name is the definition's name
		rootFields  []string // names at depth 1 (an alias is dropped at its colon)
		depth, args int      // selection set depth, and argument or variable nesting
	)
	for {
		tok, err := l.ReadToken()
		if err != nil || tok.Kind == lexer.EOF {
			return overload.Other
		}
		switch tok.Kind {
		case lexer.ParenL:
			args++
		case lexer.ParenR:
			args--
		case lexer.BraceL:
			if args > 0 {
				continue
			}
			if depth == 0 && kind == "" {
				kind = "query" // shorthand { ... }
			}
			expectName = false
			depth++
		case lexer.BraceR:
			if args > 0 {
				continue
			}
			depth--
			if depth > 0 {
				continue
			}
			if kind != "fragment" && (operationName == "" || operationName == name) {
				switch kind {
				case "query":
					return overload.Read
				case "subscription":
					return overload.Stream
				case "mutation":
					for _, f := range rootFields {
						if f == "checkout" {
							return overload.Checkout
						}
					}
				}
				return overload.Other
			}
			kind, name, rootFields = "", "", rootFields[:0]
		case lexer.Name:
			switch {
			case depth == 0 && args == 0 && kind == "":
				kind, expectName = tok.Value, true
			case depth == 0 && args == 0 && expectName:
				name, expectName = tok.Value, false
			case depth == 1 && args == 0:
				rootFields = append(rootFields, tok.Value)
			}
		case lexer.Colon:
			if depth == 1 && args == 0 && len(rootFields) > 0 {
				rootFields = rootFields[:len(rootFields)-1] // that was an alias
			}
		}
	}
}
