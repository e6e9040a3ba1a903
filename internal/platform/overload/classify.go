package overload

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"

	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/lexer"
)

// MaxPeek is how much of a POST body the classifier reads; a larger body is
// classified Other (and still reaches the handler whole).
const MaxPeek = 64 << 10

// GraphQL returns a classifier for GraphQL over HTTP requests: WebSocket upgrades are
// Stream; GET is Read (mutations are refused over GET); a POST is classified from its
// JSON body by tokenizing the selected operation (no parsing or validation): a mutation
// with a root checkout field is Checkout, another mutation Other, a query Read. A
// persisted query sent by hash alone is looked up with lookup (nil: it is Other). The
// body is given back to the next handler intact.
func GraphQL(lookup func(sha256Hash string) (query string, ok bool)) func(*http.Request) Class {
	return func(r *http.Request) Class {
		if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			return Stream
		}
		switch r.Method {
		case http.MethodGet:
			return Read
		case http.MethodPost:
		default:
			return Other
		}
		if r.Body == nil || r.Body == http.NoBody {
			return Other
		}
		peek, err := io.ReadAll(io.LimitReader(r.Body, MaxPeek+1))
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(peek), r.Body), r.Body}
		if err != nil || len(peek) > MaxPeek {
			return Other
		}
		var p struct {
			Query         string `json:"query"`
			OperationName string `json:"operationName"`
			Extensions    struct {
				PersistedQuery struct {
					Hash string `json:"sha256Hash"`
				} `json:"persistedQuery"`
			} `json:"extensions"`
		}
		if json.Unmarshal(peek, &p) != nil {
			return Other
		}
		if p.Query == "" && p.Extensions.PersistedQuery.Hash != "" && lookup != nil {
			p.Query, _ = lookup(p.Extensions.PersistedQuery.Hash)
		}
		return ClassifyQuery(p.Query, p.OperationName)
	}
}

// ClassifyQuery classifies the operation of document named operationName (the first
// one when ""), reading tokens only.
func ClassifyQuery(document, operationName string) Class {
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
			return Other
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
					return Read
				case "subscription":
					return Stream
				case "mutation":
					for _, f := range rootFields {
						if f == "checkout" {
							return Checkout
						}
					}
				}
				return Other
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
