package gqlhttp

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"

	"github.com/vektah/gqlparser/v2/gqlerror"
)

// Error codes (extensions.code) of every GraphQL error the API answers, declared here
// once for the transport, the sockets, the resolvers (graph) and the load shedder's
// answers (Refuse). Parse and validation errors keep gqlgen's GRAPHQL_PARSE_FAILED and
// GRAPHQL_VALIDATION_FAILED.
const (
	// Access and resolver errors.
	CodeUnauthenticated = "UNAUTHENTICATED"
	CodeForbidden       = "FORBIDDEN"
	CodeBadUserInput    = "BAD_USER_INPUT"
	CodeInternal        = "INTERNAL_SERVER_ERROR"
	CodeUnavailable     = "SERVICE_UNAVAILABLE" // a dependency is gone for a moment, or the service is busy
	CodeRateLimited     = "RATE_LIMITED"
	// CodeRegionUnavailable: the order lives in another region, which cannot be reached
	// now; retry (extensions.retryAfter).
	CodeRegionUnavailable = "REGION_UNAVAILABLE"

	// Request errors of GraphQL over HTTP.
	CodeBadRequest                 = "BAD_REQUEST"
	CodeMethodNotAllowed           = "METHOD_NOT_ALLOWED"
	CodeNotAcceptable              = "NOT_ACCEPTABLE"
	CodeUnsupportedMediaType       = "UNSUPPORTED_MEDIA_TYPE"
	CodeRequestTooLarge            = "REQUEST_TOO_LARGE"
	CodeRequestTimeout             = "REQUEST_TIMEOUT" // the body did not come whole within HTTP_BODY_TIMEOUT
	CodeBatchingNotSupported       = "BATCHING_NOT_SUPPORTED"
	CodeQueryTooDeep               = "QUERY_TOO_DEEP"
	CodeTooManyAliases             = "TOO_MANY_ALIASES"
	CodeTooManyRootFields          = "TOO_MANY_ROOT_FIELDS"
	CodeTooManyCheckouts           = "TOO_MANY_CHECKOUTS"
	CodeTooManyTokens              = "TOO_MANY_TOKENS"
	CodeTooManyFieldConflicts      = "TOO_MANY_FIELD_CONFLICTS"  // same response name, other field or arguments
	CodeTooManyErrors              = "TOO_MANY_ERRORS"           // the last error of a list cut at its limit
	CodeComplexityLimitExceeded    = "COMPLEXITY_LIMIT_EXCEEDED" // gqlgen's own code
	CodeIntrospectionDisabled      = "INTROSPECTION_DISABLED"
	CodePersistedQueryNotFound     = "PERSISTED_QUERY_NOT_FOUND"
	CodePersistedQueryNotSupported = "PERSISTED_QUERY_NOT_SUPPORTED"
	CodePersistedQueryNotInList    = "PERSISTED_QUERY_NOT_IN_LIST"
	CodePersistedQueryHashMismatch = "PERSISTED_QUERY_HASH_MISMATCH"

	// Operations refused over a socket.
	CodeSubscriptionsOnly    = "SUBSCRIPTIONS_ONLY"
	CodeTooManySockets       = "TOO_MANY_SOCKETS"
	CodeTooManySubscriptions = "TOO_MANY_SUBSCRIPTIONS"
)

// internalErrorBody is the answer when nothing better can be written.
const internalErrorBody = `{"errors":[{"message":"internal server error","extensions":{"code":"` + CodeInternal + `"}}]}`

// InternalError answers 500 with one INTERNAL_SERVER_ERROR (httpx.Log's answer to a
// handler that panicked before writing).
func InternalError(w http.ResponseWriter, _ *http.Request) {
	http.Error(w, internalErrorBody, http.StatusInternalServerError)
}

// Refuse answers, as a GraphQL error, a request the load shedder turned away
// (overload.Options.Reject, after Retry-After is set) with the default limits: see
// Refuser.
func Refuse(w http.ResponseWriter, r *http.Request, status int) {
	Refuser(Limits{})(w, r, status)
}

// Refuser answers, as GraphQL errors, the requests the load shedder turns away
// (overload.Options.Reject): 429 is RATE_LIMITED (the client is over its rate, or is
// sending too many bodies at once), anything else but the body's refusals
// SERVICE_UNAVAILABLE (the service is busy), both as application/json, byte for byte as
// they always were. A body that did not come whole is answered in the media type the
// client accepts: 408 REQUEST_TIMEOUT (not within HTTP_BODY_TIMEOUT), 413
// REQUEST_TOO_LARGE (over limits' MaxBodyBytes, given as extensions.limit, as the
// transport answers it), 400 BAD_REQUEST (broken off).
func Refuser(limits Limits) func(w http.ResponseWriter, r *http.Request, status int) {
	maxBody := limits.WithDefaults().MaxBodyBytes
	return func(w http.ResponseWriter, r *http.Request, status int) {
		var e *gqlerror.Error
		switch status {
		case http.StatusRequestTimeout:
			e = newError(CodeRequestTimeout, "the request body did not arrive within the time allowed: send it whole and at once")
		case http.StatusRequestEntityTooLarge:
			e = newError(CodeRequestTooLarge, "the request body is larger than the limit of %d bytes", maxBody)
			e.Extensions["limit"] = maxBody
		case http.StatusBadRequest:
			e = newError(CodeBadRequest, "the request body could not be read")
		default:
			code, msg := CodeUnavailable, "the service is busy; retry later"
			if status == http.StatusTooManyRequests {
				code, msg = CodeRateLimited, "too many requests from this client; retry later"
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			json.NewEncoder(w).Encode(map[string]any{"errors": []any{map[string]any{
				"message": msg, "extensions": map[string]any{"code": code},
			}}})
			return
		}
		media := MediaJSON
		if m, ok := Negotiate(r.Header.Values("Accept")); ok {
			media = m
		}
		writeErrors(w, media, status, e)
	}
}

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
