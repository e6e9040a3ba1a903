package gqlhttp

import (
	"fmt"
	"regexp"

	"github.com/vektah/gqlparser/v2/gqlerror"
)

// Error codes (extensions.code) of the errors this package answers. Parse and validation
// errors keep gqlgen's GRAPHQL_PARSE_FAILED and GRAPHQL_VALIDATION_FAILED.
const (
	CodeBadRequest                 = "BAD_REQUEST"
	CodeMethodNotAllowed           = "METHOD_NOT_ALLOWED"
	CodeNotAcceptable              = "NOT_ACCEPTABLE"
	CodeUnsupportedMediaType       = "UNSUPPORTED_MEDIA_TYPE"
	CodeRequestTooLarge            = "REQUEST_TOO_LARGE"
	CodeBatchingNotSupported       = "BATCHING_NOT_SUPPORTED"
	CodeQueryTooDeep               = "QUERY_TOO_DEEP"
	CodeTooManyAliases             = "TOO_MANY_ALIASES"
	CodeTooManyRootFields          = "TOO_MANY_ROOT_FIELDS"
	CodeTooManyTokens              = "TOO_MANY_TOKENS"
	CodeComplexityLimitExceeded    = "COMPLEXITY_LIMIT_EXCEEDED" // gqlgen's own code
	CodeIntrospectionDisabled      = "INTROSPECTION_DISABLED"
	CodePersistedQueryNotFound     = "PERSISTED_QUERY_NOT_FOUND"
	CodePersistedQueryNotSupported = "PERSISTED_QUERY_NOT_SUPPORTED"
	CodePersistedQueryNotInList    = "PERSISTED_QUERY_NOT_IN_LIST"
	CodePersistedQueryHashMismatch = "PERSISTED_QUERY_HASH_MISMATCH"
)

// newError is a GraphQL error with an extensions.code and optional extra extensions
// (key, value pairs).
func newError(code, format string, args ...any) *gqlerror.Error {
	return &gqlerror.Error{Message: fmt.Sprintf(format, args...), Extensions: map[string]any{"code": code}}
}

// limitError is a limit's error: its code, the limit and the measured value.
func limitError(code string, actual, limit int, format string) *gqlerror.Error {
	e := newError(code, format, actual, limit)
	e.Extensions["limit"] = limit
	e.Extensions["actual"] = actual
	return e
}

func codeOf(e *gqlerror.Error) string {
	if e == nil || e.Extensions == nil {
		return ""
	}
	c, _ := e.Extensions["code"].(string)
	return c
}

// suggestion is what gqlparser's validation rules append to a message: field, argument,
// type and enum value names of the schema.
var suggestion = regexp.MustCompile(` ?Did you mean [^?]*\?`)

// WithoutSuggestions drops the "Did you mean ...?" hints from a validation error, which
// would spell the schema out to a client when introspection is off (gqlgen's
// SetDisableSuggestion covers two of the rules that give them, not all).
func WithoutSuggestions(e *gqlerror.Error) *gqlerror.Error {
	e.Message = suggestion.ReplaceAllString(e.Message, "")
	return e
}
