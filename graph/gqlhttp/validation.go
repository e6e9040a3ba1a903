package gqlhttp

// What this file adds to gqlgen's parse and validation, which caches a document only once
// it is valid and answers every error its rules report: validation stops collecting
// errors past a cap (a document can have one per pair of its fields, tens of thousands),
// the answer lists at most that many and says the rest were cut, and a document that
// failed is remembered by the hash of its text, so sending it again costs a lookup, not
// another parse and validation.

import (
	"context"
	"crypto/sha256"
	"net/http"
	"sync/atomic"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/errcode"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"github.com/vektah/gqlparser/v2/validator/core"
	"github.com/vektah/gqlparser/v2/validator/rules"
)

// Defaults of ValidationOptions.
const (
	// DefaultMaxErrors is how many errors a request error lists: a client fixes its
	// document from the first few, and more only make the answer large.
	DefaultMaxErrors = 20
	// DefaultFailedDocuments is how many failed documents are remembered.
	DefaultFailedDocuments = 1000
	// maxFailedEntryBytes bounds the messages of one remembered failure (they quote the
	// document's names, which can be long): DefaultFailedDocuments of them hold at most
	// 16 MB. A longer failure is answered, not remembered.
	maxFailedEntryBytes = 16 << 10
)

// ValidationOptions configure Validation; zero fields take their defaults.
type ValidationOptions struct {
	// MaxErrors caps the errors of one answer to a document that cannot run.
	MaxErrors int
	// FailedDocuments is the size of the LRU of documents that failed to parse or
	// validate (by the SHA-256 of their text).
	FailedDocuments int
}

// Validation bounds what a document that fails costs: the errors validation collects and
// answers, and the work of a repeat. Safe for concurrent use; one per server.
type Validation struct {
	maxErrors   int
	failed      *lru.LRU[gqlerror.List]
	validations atomic.Int64
	hits        atomic.Int64
}

// NewValidation returns a Validation for o.
func NewValidation(o ValidationOptions) *Validation {
	if o.MaxErrors <= 0 {
		o.MaxErrors = DefaultMaxErrors
	}
	if o.FailedDocuments <= 0 {
		o.FailedDocuments = DefaultFailedDocuments
	}
	return &Validation{maxErrors: o.MaxErrors, failed: lru.New[gqlerror.List](o.FailedDocuments)}
}

// Validations is how many documents have been validated (tests and metrics).
func (v *Validation) Validations() int64 { return v.validations.Load() }

// FailedHits is how many requests were answered from the failed documents.
func (v *Validation) FailedHits() int64 { return v.hits.Load() }

// Rules is gqlgen's validation rules function (handler.Server.SetValidationRulesFn): the
// default rules, which stop adding errors once one more than MaxErrors was found (so the
// answer can say that more were cut). gqlgen calls it once per validation.
func (v *Validation) Rules() *rules.Rules {
	v.validations.Add(1)
	rs := rules.NewDefaultRules()
	var n int // one validation runs its rules on one goroutine
	for name, f := range rs.GetInner() {
		rs.ReplaceRule(name, func(obs *core.Events, addError core.AddErrFunc) {
			f(obs, func(opts ...core.ErrorOption) {
				if n <= v.maxErrors {
					n++
					addError(opts...)
				}
			})
		})
	}
	return rs
}

// Transport wraps a transport so that its operations go through v.
func (v *Validation) Transport(t graphql.Transport) graphql.Transport {
	return WithExecutor(t, func(e graphql.GraphExecutor) graphql.GraphExecutor { return &validatingExecutor{e, v} })
}

// cap lists at most MaxErrors errors, and one more saying the rest were cut.
func (v *Validation) cap(errs gqlerror.List) gqlerror.List {
	if len(errs) <= v.maxErrors {
		return errs
	}
	e := newError(CodeTooManyErrors, "the document has more errors than the %d listed: fix these first", v.maxErrors)
	e.Extensions["limit"] = v.maxErrors
	return append(errs[:v.maxErrors:v.maxErrors], e)
}

type validatingExecutor struct {
	graphql.GraphExecutor
	v *Validation
}

func (e *validatingExecutor) CreateOperationContext(ctx context.Context, p *graphql.RawParams) (*graphql.OperationContext, gqlerror.List) {
	var key string
	if p.Query != "" {
		sum := sha256.Sum256([]byte(p.Query))
		key = string(sum[:])
		if errs, ok := e.v.failed.Get(ctx, key); ok {
			e.v.hits.Add(1)
			oc := &graphql.OperationContext{RawQuery: p.Query, OperationName: p.OperationName, Variables: p.Variables,
				Extensions: p.Extensions, Headers: p.Headers, Stats: graphql.Stats{Read: p.ReadTime, OperationStart: graphql.GetStartTime(ctx)}}
			return oc, clone(errs)
		}
	}
	oc, errs := e.GraphExecutor.CreateOperationContext(ctx, p)
	if len(errs) == 0 {
		return oc, errs
	}
	errs = e.v.cap(errs)
	if oc != nil && oc.Doc == nil && documentErrors(errs) && size(errs) <= maxFailedEntryBytes {
		// The document itself failed (not its variables, operation name or a lookup of a
		// persisted query): every later request of the same text fails the same way.
		if oc.RawQuery != p.Query || key == "" {
			sum := sha256.Sum256([]byte(oc.RawQuery))
			key = string(sum[:])
		}
		e.v.failed.Add(ctx, key, clone(errs))
	}
	return oc, errs
}

// documentErrors reports whether errs are parse or validation errors (of the document,
// its text alone deciding them).
func documentErrors(errs gqlerror.List) bool {
	for _, err := range errs {
		switch codeOf(err) {
		case errcode.ParseFailed, errcode.ValidationFailed, CodeTooManyErrors:
		default:
			return false
		}
	}
	return true
}

// size is the length of the messages of errs.
func size(errs gqlerror.List) int {
	n := 0
	for _, err := range errs {
		n += len(err.Message)
	}
	return n
}

// clone copies errs (the error presenter edits the errors it is handed).
func clone(errs gqlerror.List) gqlerror.List {
	out := make(gqlerror.List, len(errs))
	for i, err := range errs {
		c := *err
		if err.Extensions != nil {
			c.Extensions = make(map[string]any, len(err.Extensions))
			for k, v := range err.Extensions {
				c.Extensions[k] = v
			}
		}
		out[i] = &c
	}
	return out
}

// WithExecutor wraps a transport so that it runs operations through wrap(exec).
func WithExecutor(t graphql.Transport, wrap func(graphql.GraphExecutor) graphql.GraphExecutor) graphql.Transport {
	return wrappedTransport{t, wrap}
}

type wrappedTransport struct {
	graphql.Transport
	wrap func(graphql.GraphExecutor) graphql.GraphExecutor
}

func (t wrappedTransport) Do(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor) {
	t.Transport.Do(w, r, t.wrap(exec))
}
