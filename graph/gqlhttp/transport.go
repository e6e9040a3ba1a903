// Package gqlhttp serves GraphQL over HTTP as the GraphQL-over-HTTP specification says, and
// guards it: request limits, persisted queries (automatic and trusted documents), CORS and
// the WebSocket connections of subscriptions. It also holds the GraphQL error codes
// (extensions.code), and the extensions that trace and time operations. It knows no
// schema: graph/ plugs these pieces into gqlgen's handler.
package gqlhttp

// What this file adds to gqlgen's own transport.GET and transport.POST, which decode the
// request, run it and write the answer: the GraphQL-over-HTTP specification's edges that
// gqlgen leaves out. Accept is negotiated with q-values (406 when nothing fits); a POST
// body must be application/json in utf-8 (415), at most MaxBodyBytes (413), one JSON
// object whose members have the right types (400, never echoing the body, where gqlgen
// echoes it); a request error (parse, validation, limits, persisted queries) is answered
// without a "data" entry, 200 for application/json and a 4xx for
// application/graphql-response+json (gqlgen answers 422 and data: null); a mutation over
// GET is 405 with "Allow: POST" (gqlgen: 406), a subscription over HTTP 400; OPTIONS is 204
// with Allow; and the persisted-documents "documentId" parameter is taken.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// The response media types of the GraphQL-over-HTTP specification.
const (
	MediaJSON            = "application/json"
	MediaGraphQLResponse = "application/graphql-response+json"
)

// DefaultMaxBodyBytes caps a POST body when no other limit is set (1 MiB).
const DefaultMaxBodyBytes = 1 << 20

const allowedMethods = "GET, POST, OPTIONS"

// Transport is the gqlgen transport of GET and POST: it checks a request against the
// specification, then hands it to gqlgen's transport.GET or transport.POST, and sets the
// status and shape of request errors on the way out.
type Transport struct {
	// MaxBodyBytes caps a POST body; 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
}

var _ graphql.Transport = Transport{}

// Supports takes every request but WebSocket upgrades (left to transport.Websocket).
func (t Transport) Supports(r *http.Request) bool { return r.Header.Get("Upgrade") == "" }

// Do serves one GraphQL-over-HTTP request.
func (t Transport) Do(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor) {
	switch r.Method {
	case http.MethodGet, http.MethodPost:
	case http.MethodOptions:
		w.Header().Set("Allow", allowedMethods)
		w.WriteHeader(http.StatusNoContent)
		return
	default:
		w.Header().Set("Allow", allowedMethods)
		writeErrors(w, MediaJSON, http.StatusMethodNotAllowed,
			newError(CodeMethodNotAllowed, "method %s is not allowed here: use POST, or GET for queries", r.Method))
		return
	}
	media, ok := Negotiate(r.Header.Values("Accept"))
	if !ok {
		writeErrors(w, MediaJSON, http.StatusNotAcceptable, newError(CodeNotAcceptable,
			"the Accept header allows no media type served here: accept %s or %s", MediaGraphQLResponse, MediaJSON))
		return
	}
	w.Header().Add("Vary", "Accept")
	r = r.Clone(r.Context())
	r.Header.Set("Accept", media) // gqlgen's transports then answer with the same type
	status, gerr := http.StatusBadRequest, (*gqlerror.Error)(nil)
	if r.Method == http.MethodGet {
		gerr = checkGET(r)
	} else {
		status, gerr = t.checkPOST(w, r)
	}
	if gerr != nil {
		writeErrors(w, media, status, gerr)
		return
	}
	ex := &executor{GraphExecutor: exec, method: r.Method}
	sw := &specWriter{ResponseWriter: w, media: media, exec: ex}
	if r.Method == http.MethodGet {
		transport.GET{}.Do(sw, r, ex)
	} else {
		transport.POST{}.Do(sw, r, ex)
	}
}

// executor remembers the request errors of an operation, and refuses the operations the
// method does not carry, before they run.
type executor struct {
	graphql.GraphExecutor
	method string
	errs   gqlerror.List
}

func (e *executor) CreateOperationContext(ctx context.Context, p *graphql.RawParams) (*graphql.OperationContext, gqlerror.List) {
	oc, errs := e.GraphExecutor.CreateOperationContext(ctx, p)
	if errs == nil {
		switch op := oc.Operation.Operation; {
		case op == ast.Mutation && e.method == http.MethodGet:
			errs = gqlerror.List{newError(CodeMethodNotAllowed, "mutations are not allowed over GET: use POST")}
		case op == ast.Subscription:
			errs = gqlerror.List{newError(CodeBadRequest,
				"subscriptions are served over WebSocket at this URL (subprotocol graphql-transport-ws), not over %s", e.method)}
		}
	}
	e.errs = errs
	return oc, errs
}

// gqlgenDecodeError begins gqlgen's error for a POST body it cannot decode, which goes on
// to quote the body.
const gqlgenDecodeError = "json request body could not be decoded"

// specWriter sets the status, media type and body shape of the answer gqlgen writes.
type specWriter struct {
	http.ResponseWriter
	media       string
	exec        *executor
	wroteHeader bool
}

// WriteHeader ignores gqlgen's status: Write decides.
func (w *specWriter) WriteHeader(int) {}

func (w *specWriter) Write(b []byte) (int, error) {
	if w.wroteHeader {
		return w.ResponseWriter.Write(b)
	}
	w.wroteHeader = true
	if w.exec.errs == nil {
		setContentType(w.Header(), w.media, http.StatusOK)
		w.ResponseWriter.WriteHeader(http.StatusOK)
		return w.ResponseWriter.Write(b)
	}
	// A request error: the specification's status, and no "data" entry.
	var resp errorResponse
	if err := json.Unmarshal(b, &resp); err != nil {
		resp.Errors = w.exec.errs
	}
	for i, e := range resp.Errors {
		if strings.HasPrefix(e.Message, gqlgenDecodeError) {
			// gqlgen quotes the whole body in this message; checkBody makes it
			// unreachable, and should it come, the body stays unsaid.
			resp.Errors[i] = newError(CodeBadRequest, "the request body could not be decoded as a GraphQL request")
		}
	}
	status := requestErrorStatus(w.media, resp.Errors)
	switch status {
	case http.StatusMethodNotAllowed:
		w.Header().Set("Allow", http.MethodPost)
	case http.StatusTooManyRequests:
		w.Header().Set("Retry-After", retryAfter(resp.Errors))
	}
	writeJSON(w.ResponseWriter, w.media, status, resp)
	return len(b), nil
}

// retryAfter is the Retry-After of a RATE_LIMITED error (whole seconds, at least 1).
func retryAfter(errs gqlerror.List) string {
	for _, e := range errs {
		if codeOf(e) == CodeRateLimited {
			if s, ok := e.Extensions["retryAfter"].(float64); ok && s >= 1 {
				return strconv.Itoa(int(s))
			}
		}
	}
	return "1"
}

// requestErrorStatus is the status of a response to a request that failed before
// execution: 200 for legacy application/json clients (405 for a mutation over GET, as
// for any client), a 4xx with application/graphql-response+json.
func requestErrorStatus(media string, errs gqlerror.List) int {
	for _, e := range errs {
		switch codeOf(e) {
		case CodeMethodNotAllowed:
			return http.StatusMethodNotAllowed
		case CodeRateLimited:
			// As the shedder answers a client over its rate, whatever the media type.
			return http.StatusTooManyRequests
		}
	}
	if media != MediaGraphQLResponse {
		return http.StatusOK
	}
	for _, e := range errs {
		switch codeOf(e) {
		case CodePersistedQueryNotFound:
			return http.StatusNotFound
		case CodePersistedQueryNotInList:
			return http.StatusForbidden
		}
	}
	return http.StatusBadRequest
}

// checkPOST checks the media type, size and shape of a POST body and puts it back for
// gqlgen to read.
func (t Transport) checkPOST(w http.ResponseWriter, r *http.Request) (int, *gqlerror.Error) {
	ct := r.Header.Get("Content-Type")
	mt, mtParams, err := mime.ParseMediaType(ct)
	if ct == "" || err != nil || mt != MediaJSON {
		return http.StatusUnsupportedMediaType, newError(CodeUnsupportedMediaType,
			"a POST body must be %s (Content-Type: %s)", MediaJSON, MediaJSON)
	}
	if cs, ok := mtParams["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return http.StatusUnsupportedMediaType, newError(CodeUnsupportedMediaType, "a POST body must be encoded in utf-8")
	}
	limit := t.MaxBodyBytes
	if limit <= 0 {
		limit = DefaultMaxBodyBytes
	}
	tooLarge := func() (int, *gqlerror.Error) {
		e := newError(CodeRequestTooLarge, "the request body is larger than the limit of %d bytes", limit)
		e.Extensions["limit"] = limit
		return http.StatusRequestEntityTooLarge, e
	}
	if r.ContentLength > limit {
		return tooLarge()
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return tooLarge()
		}
		return http.StatusBadRequest, newError(CodeBadRequest, "the request body could not be read")
	}
	body, gerr := checkBody(body)
	r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	return http.StatusBadRequest, gerr
}

// requestMembers are the members of a GraphQL-over-HTTP request body; persistedQuery
// the member of extensions this service reads, and persistedQueryMembers its own.
var (
	requestMembers        = []string{"query", "operationName", "variables", "extensions", "documentId"}
	persistedQueryMembers = []string{"version", "sha256Hash"}
)

// checkBody checks the JSON encoding of a GraphQL-over-HTTP request, and returns it with
// a documentId turned into extensions.persistedQuery. Member names are exact: a member
// twice, or one whose name is a known member's in another case ("OperationName"), is
// refused, because encoding/json (gqlgen's decoder) matches names without regard to case
// and keeps the last one, so such a body could be read one way here and another by
// gqlgen. The body returned decodes as gqlgen decodes it (graphql.RawParams), so gqlgen
// never reports, and echoes, a body it cannot decode.
func checkBody(body []byte) ([]byte, *gqlerror.Error) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	switch {
	case len(trimmed) == 0:
		return nil, newError(CodeBadRequest, `the request body is empty: send {"query": "..."}`)
	case trimmed[0] == '[':
		return nil, newError(CodeBatchingNotSupported, "batched requests (a JSON array) are not accepted: send one operation per request")
	case trimmed[0] != '{':
		return nil, newError(CodeBadRequest, `the request body must be a JSON object: {"query": "...", "variables": {...}}`)
	}
	members, gerr := exactObject(trimmed, "the request body", requestMembers)
	if gerr != nil {
		return nil, gerr
	}
	get := func(name string) json.RawMessage {
		if v := members[name]; string(v) != "null" {
			return v
		}
		return nil
	}
	for _, name := range []string{"query", "operationName", "documentId"} {
		if v := get(name); v != nil && v[0] != '"' {
			return nil, newError(CodeBadRequest, "%s must be a string", name)
		}
	}
	for _, name := range []string{"variables", "extensions"} {
		if v := get(name); v != nil && v[0] != '{' {
			return nil, newError(CodeBadRequest, "%s must be a JSON object", name)
		}
	}
	if v := get("extensions"); v != nil {
		ext, gerr := exactObject(v, "extensions", []string{"persistedQuery"})
		if gerr != nil {
			return nil, gerr
		}
		if pq := ext["persistedQuery"]; len(pq) > 0 && pq[0] == '{' {
			if _, gerr := exactObject(pq, "extensions.persistedQuery", persistedQueryMembers); gerr != nil {
				return nil, gerr
			}
		}
	}
	var docID string
	if v := get("documentId"); v != nil {
		json.Unmarshal(v, &docID)
	}
	ext, err := withDocumentID(get("extensions"), docID)
	if err != nil {
		return nil, newError(CodeBadRequest, "extensions must be a JSON object")
	}
	if v := get("query"); (v == nil || string(v) == `""`) && !hasPersistedQuery(ext) {
		return nil, missingQuery()
	}
	if docID != "" {
		members["extensions"] = ext
		delete(members, "documentId")
		body, _ = json.Marshal(members)
	}
	if _, err := decodeParams(body); err != nil {
		return nil, newError(CodeBadRequest, "the request body is not a GraphQL request: %s", jsonProblem(err))
	}
	return body, nil
}

// decodeParams decodes a request body exactly as gqlgen's POST transport does.
func decodeParams(body []byte) (*graphql.RawParams, error) {
	var p graphql.RawParams
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&p); err != nil {
		return nil, err
	}
	return &p, nil
}

// exactObject reads the members of the JSON object raw (what names it in errors),
// refusing a member given twice and a member whose name equals one of known only
// without regard to case. Errors name no member but a known one, and quote no value.
func exactObject(raw []byte, what string, known []string) (map[string]json.RawMessage, *gqlerror.Error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	notJSON := func(err error) *gqlerror.Error {
		return newError(CodeBadRequest, "the request body is not valid JSON: %s", jsonProblem(err))
	}
	if tok, err := dec.Token(); err != nil {
		return nil, notJSON(err)
	} else if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, newError(CodeBadRequest, "%s must be a JSON object", what)
	}
	members := map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, notJSON(err)
		}
		name, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, notJSON(err)
		}
		for _, k := range known {
			if name != k && strings.EqualFold(name, k) {
				return nil, newError(CodeBadRequest, "member names are exact: %s has %q where %q is meant", what, name, k)
			}
		}
		if _, twice := members[name]; twice {
			if slices.Contains(known, name) {
				return nil, newError(CodeBadRequest, "%s has the member %q twice", what, name)
			}
			return nil, newError(CodeBadRequest, "%s has a member twice", what)
		}
		members[name] = v
	}
	if _, err := dec.Token(); err != nil {
		return nil, notJSON(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, newError(CodeBadRequest, "the request body is not valid JSON: data after the object")
	}
	return members, nil
}

// checkGET checks the URL parameters of a GET, turning a documentId into
// extensions.persistedQuery.
func checkGET(r *http.Request) *gqlerror.Error {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return newError(CodeBadRequest, "the URL query could not be decoded")
	}
	for _, name := range []string{"variables", "extensions"} {
		if v := strings.TrimSpace(q.Get(name)); v != "" && (v[0] != '{' || !json.Valid([]byte(v))) {
			return newError(CodeBadRequest, "%s must be a JSON object (URL-encoded)", name)
		}
	}
	var ext json.RawMessage
	if v := q.Get("extensions"); v != "" {
		ext = json.RawMessage(v)
	}
	ext, err = withDocumentID(ext, q.Get("documentId"))
	if err != nil {
		return newError(CodeBadRequest, "extensions must be a JSON object (URL-encoded)")
	}
	if q.Get("query") == "" && !hasPersistedQuery(ext) {
		return missingQuery()
	}
	if q.Has("documentId") {
		q.Set("extensions", string(ext))
		q.Del("documentId")
		r.URL.RawQuery = q.Encode()
	}
	return nil
}

// withDocumentID hands a persisted document id ("<hash>" or "sha256:<hash>") on as
// extensions.persistedQuery, unless that is already there.
func withDocumentID(ext json.RawMessage, docID string) (json.RawMessage, error) {
	if docID == "" {
		return ext, nil
	}
	m := map[string]json.RawMessage{}
	if ext != nil {
		if err := json.Unmarshal(ext, &m); err != nil {
			return nil, err
		}
	}
	if pq := m["persistedQuery"]; pq == nil || string(pq) == "null" {
		m["persistedQuery"], _ = json.Marshal(map[string]any{"version": 1, "sha256Hash": stripHashPrefix(docID)})
	}
	return json.Marshal(m)
}

func hasPersistedQuery(ext json.RawMessage) bool {
	var m map[string]json.RawMessage
	return json.Unmarshal(ext, &m) == nil && m["persistedQuery"] != nil && string(m["persistedQuery"]) != "null"
}

func missingQuery() *gqlerror.Error {
	return newError(CodeBadRequest,
		`missing query: send {"query": "..."} (or, for a persisted query, extensions.persistedQuery {"version": 1, "sha256Hash": "..."})`)
}

// jsonProblem describes a JSON syntax error without quoting the body.
func jsonProblem(err error) string {
	if se, ok := errors.AsType[*json.SyntaxError](err); ok {
		return se.Error() + " (at byte " + strconv.FormatInt(se.Offset, 10) + ")"
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return "unexpected end of input"
	}
	return "malformed"
}

// Negotiate picks the response media type from the Accept header values: the acceptable
// type of highest quality; on a tie the more specific match, and between equally specific
// ones application/graphql-response+json when both are named, application/json when they
// come from a wildcard (legacy clients send */*). No header, or none that parses, means
// application/json. ok is false when neither type is acceptable (406).
func Negotiate(accept []string) (media string, ok bool) {
	type score struct {
		q    float64
		spec int // 0 no match, 1 */*, 2 application/*, 3 exact
	}
	var gr, js score
	seen := false
	for _, h := range accept {
		for part := range strings.SplitSeq(h, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil {
				continue
			}
			seen = true
			q := 1.0
			if v, ok := params["q"]; ok {
				if q, err = strconv.ParseFloat(v, 64); err != nil || q < 0 || q > 1 {
					continue
				}
			}
			for _, c := range []struct {
				s    *score
				name string
			}{{&gr, MediaGraphQLResponse}, {&js, MediaJSON}} {
				spec := map[string]int{c.name: 3, "application/*": 2, "*/*": 1}[mt]
				if spec > c.s.spec {
					*c.s = score{q: q, spec: spec}
				}
			}
		}
	}
	switch {
	case !seen:
		return MediaJSON, true
	case gr.q <= 0 && js.q <= 0:
		return "", false
	case gr.q != js.q:
		return map[bool]string{true: MediaGraphQLResponse, false: MediaJSON}[gr.q > js.q], true
	case gr.spec != js.spec:
		return map[bool]string{true: MediaGraphQLResponse, false: MediaJSON}[gr.spec > js.spec], true
	case gr.spec == 3:
		return MediaGraphQLResponse, true
	}
	return MediaJSON, true
}

// errorResponse is a response to a request error: no "data" entry, as the specification
// asks when execution did not start.
type errorResponse struct {
	Errors     gqlerror.List  `json:"errors"`
	Extensions map[string]any `json:"extensions,omitempty"`
}

func writeErrors(w http.ResponseWriter, media string, status int, errs ...*gqlerror.Error) {
	writeJSON(w, media, status, errorResponse{Errors: errs})
}

func writeJSON(w http.ResponseWriter, media string, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		b, status = []byte(internalErrorBody), http.StatusInternalServerError
	}
	setContentType(w.Header(), media, status)
	w.WriteHeader(status)
	w.Write(b)
}

func setContentType(h http.Header, media string, status int) {
	h.Set("Content-Type", media+"; charset=utf-8")
	if status >= 300 && h.Get("Cache-Control") == "" { // "private, no-store" (Private) stays
		h.Set("Cache-Control", "no-store")
	}
}
