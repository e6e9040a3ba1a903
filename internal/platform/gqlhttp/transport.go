// Package gqlhttp serves GraphQL over HTTP as the GraphQL-over-HTTP specification says, and
// guards it: request limits, persisted queries (automatic and trusted documents) and CORS.
// It knows no schema: graph/ plugs these pieces into gqlgen's handler.
package gqlhttp

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/99designs/gqlgen/graphql"
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

// Transport is a gqlgen transport for GET and POST that follows the GraphQL-over-HTTP
// specification (the 2025 draft, which has application/json and
// application/graphql-response+json responses), in place of gqlgen's transport.GET, POST
// and Options. It differs from those where they deviate from the specification:
//
//   - the response media type is negotiated from Accept, with q-values; none acceptable: 406;
//   - a POST body must be application/json (else 415), at most MaxBodyBytes (else 413),
//     one JSON object (a batch array or malformed JSON: 400, and the body is never echoed);
//   - a missing query, or a parameter of the wrong type: 400;
//   - parse, validation and other request errors (limits, persisted queries): 200 with
//     application/json, 4xx with application/graphql-response+json, and no "data" entry;
//   - a mutation over GET: 405 with "Allow: POST"; a subscription: 400 (WebSocket only);
//   - other methods: 405 with Allow; OPTIONS: 204 (CORS preflights are answered before).
//
// Besides the specification's parameters it takes the persisted-documents "documentId"
// (also as "sha256:<hex>"), handed on as extensions.persistedQuery.
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

	start := graphql.Now()
	var params *graphql.RawParams
	status, gerr := http.StatusBadRequest, (*gqlerror.Error)(nil)
	if r.Method == http.MethodGet {
		params, gerr = readGET(r)
	} else {
		params, status, gerr = t.readPOST(w, r)
	}
	if gerr != nil {
		writeErrors(w, media, status, gerr)
		return
	}
	params.Headers = r.Header
	params.ReadTime = graphql.TraceTiming{Start: start, End: graphql.Now()}

	ctx := r.Context()
	opCtx, errs := exec.CreateOperationContext(ctx, params)
	if errs != nil {
		resp := exec.DispatchError(graphql.WithOperationContext(ctx, opCtx), errs)
		writeErrorResponse(w, media, requestErrorStatus(media, errs), resp)
		return
	}
	switch opCtx.Operation.Operation {
	case ast.Mutation:
		if r.Method == http.MethodGet {
			w.Header().Set("Allow", http.MethodPost)
			writeErrors(w, media, http.StatusMethodNotAllowed,
				newError(CodeMethodNotAllowed, "mutations are not allowed over GET: use POST"))
			return
		}
	case ast.Subscription:
		writeErrors(w, media, http.StatusBadRequest, newError(CodeBadRequest,
			"subscriptions are served over WebSocket at this URL (subprotocol graphql-transport-ws), not over %s", r.Method))
		return
	}
	responses, ctx := exec.DispatchOperation(ctx, opCtx)
	resp := responses(ctx)
	if resp == nil { // the client went away
		return
	}
	writeJSON(w, media, http.StatusOK, resp)
}

// requestErrorStatus is the status of a response to a request that failed before
// execution (parse, validation, limits, persisted queries): 200 for legacy
// application/json clients, a 4xx with application/graphql-response+json.
func requestErrorStatus(media string, errs gqlerror.List) int {
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

func (t Transport) readPOST(w http.ResponseWriter, r *http.Request) (*graphql.RawParams, int, *gqlerror.Error) {
	ct := r.Header.Get("Content-Type")
	mt, mtParams, err := mime.ParseMediaType(ct)
	if ct == "" || err != nil || mt != MediaJSON {
		return nil, http.StatusUnsupportedMediaType, newError(CodeUnsupportedMediaType,
			"a POST body must be %s (Content-Type: %s)", MediaJSON, MediaJSON)
	}
	if cs, ok := mtParams["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return nil, http.StatusUnsupportedMediaType, newError(CodeUnsupportedMediaType, "a POST body must be encoded in utf-8")
	}
	max := t.MaxBodyBytes
	if max <= 0 {
		max = DefaultMaxBodyBytes
	}
	tooLarge := func() (*graphql.RawParams, int, *gqlerror.Error) {
		e := newError(CodeRequestTooLarge, "the request body is larger than the limit of %d bytes", max)
		e.Extensions["limit"] = max
		return nil, http.StatusRequestEntityTooLarge, e
	}
	if r.ContentLength > max {
		return tooLarge()
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return tooLarge()
		}
		return nil, http.StatusBadRequest, newError(CodeBadRequest, "the request body could not be read")
	}
	p, gerr := decodeBody(body)
	return p, http.StatusBadRequest, gerr
}

// decodeBody reads the JSON encoding of a GraphQL-over-HTTP request.
func decodeBody(body []byte) (*graphql.RawParams, *gqlerror.Error) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	switch {
	case len(trimmed) == 0:
		return nil, newError(CodeBadRequest, `the request body is empty: send {"query": "..."}`)
	case trimmed[0] == '[':
		return nil, newError(CodeBatchingNotSupported, "batched requests (a JSON array) are not accepted: send one operation per request")
	case trimmed[0] != '{':
		return nil, newError(CodeBadRequest, `the request body must be a JSON object: {"query": "...", "variables": {...}}`)
	}
	var raw struct {
		Query         json.RawMessage `json:"query"`
		OperationName json.RawMessage `json:"operationName"`
		Variables     json.RawMessage `json:"variables"`
		Extensions    json.RawMessage `json:"extensions"`
		DocumentID    json.RawMessage `json:"documentId"`
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	if err := dec.Decode(&raw); err != nil {
		return nil, newError(CodeBadRequest, "the request body is not valid JSON: %s", jsonProblem(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, newError(CodeBadRequest, "the request body is not valid JSON: data after the object")
	}
	p := &graphql.RawParams{}
	var docID string
	for _, f := range []struct {
		name string
		raw  json.RawMessage
		str  *string
		obj  *map[string]any
	}{
		{"query", raw.Query, &p.Query, nil},
		{"operationName", raw.OperationName, &p.OperationName, nil},
		{"documentId", raw.DocumentID, &docID, nil},
		{"variables", raw.Variables, nil, &p.Variables},
		{"extensions", raw.Extensions, nil, &p.Extensions},
	} {
		if len(f.raw) == 0 || string(f.raw) == "null" {
			continue
		}
		if f.str != nil {
			if f.raw[0] != '"' || json.Unmarshal(f.raw, f.str) != nil {
				return nil, newError(CodeBadRequest, "%s must be a string", f.name)
			}
			continue
		}
		m, ok := decodeObject(f.raw)
		if !ok {
			return nil, newError(CodeBadRequest, "%s must be a JSON object", f.name)
		}
		*f.obj = m
	}
	return finish(p, docID)
}

func readGET(r *http.Request) (*graphql.RawParams, *gqlerror.Error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, newError(CodeBadRequest, "the URL query could not be decoded")
	}
	p := &graphql.RawParams{Query: q.Get("query"), OperationName: q.Get("operationName")}
	for _, f := range []struct {
		name string
		obj  *map[string]any
	}{{"variables", &p.Variables}, {"extensions", &p.Extensions}} {
		v := q.Get(f.name)
		if v == "" {
			continue
		}
		m, ok := decodeObject([]byte(v))
		if !ok {
			return nil, newError(CodeBadRequest, "%s must be a JSON object (URL-encoded)", f.name)
		}
		*f.obj = m
	}
	return finish(p, q.Get("documentId"))
}

// finish hands a documentId on as extensions.persistedQuery and refuses a request with
// neither a query nor a persisted query.
func finish(p *graphql.RawParams, docID string) (*graphql.RawParams, *gqlerror.Error) {
	if docID != "" {
		if p.Extensions == nil {
			p.Extensions = map[string]any{}
		}
		if p.Extensions["persistedQuery"] == nil {
			p.Extensions["persistedQuery"] = map[string]any{"version": 1, "sha256Hash": stripHashPrefix(docID)}
		}
	}
	if p.Query == "" && p.Extensions["persistedQuery"] == nil {
		return nil, newError(CodeBadRequest,
			`missing query: send {"query": "..."} (or, for a persisted query, extensions.persistedQuery {"version": 1, "sha256Hash": "..."})`)
	}
	return p, nil
}

// decodeObject decodes a JSON object, numbers kept as json.Number (as gqlgen expects).
func decodeObject(b []byte) (map[string]any, bool) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, false
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, false
	}
	return m, true
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
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			mt, params, err := mime.ParseMediaType(part)
			if err != nil {
				continue
			}
			seen = true
			q := 1.0
			if v, ok := params["q"]; ok {
				if q, err = parseQ(v); err != nil {
					continue
				}
			}
			for _, c := range []struct {
				s    *score
				name string
			}{{&gr, MediaGraphQLResponse}, {&js, MediaJSON}} {
				spec := 0
				switch mt {
				case c.name:
					spec = 3
				case "application/*":
					spec = 2
				case "*/*":
					spec = 1
				}
				if spec > c.s.spec {
					*c.s = score{q: q, spec: spec}
				}
			}
		}
	}
	if !seen {
		return MediaJSON, true
	}
	switch {
	case gr.q <= 0 && js.q <= 0:
		return "", false
	case gr.q != js.q:
		if gr.q > js.q {
			return MediaGraphQLResponse, true
		}
		return MediaJSON, true
	case gr.spec != js.spec:
		if gr.spec > js.spec {
			return MediaGraphQLResponse, true
		}
		return MediaJSON, true
	case gr.spec == 3:
		return MediaGraphQLResponse, true
	}
	return MediaJSON, true
}

func parseQ(v string) (float64, error) {
	q, err := strconv.ParseFloat(v, 64)
	if err != nil || q < 0 || q > 1 {
		return 0, errors.New("bad q")
	}
	return q, nil
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

func writeErrorResponse(w http.ResponseWriter, media string, status int, resp *graphql.Response) {
	writeJSON(w, media, status, errorResponse{Errors: resp.Errors, Extensions: resp.Extensions})
}

func writeJSON(w http.ResponseWriter, media string, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		b, status = []byte(`{"errors":[{"message":"internal server error","extensions":{"code":"INTERNAL_SERVER_ERROR"}}]}`), http.StatusInternalServerError
	}
	h := w.Header()
	h.Set("Content-Type", media+"; charset=utf-8")
	if status >= 300 {
		h.Set("Cache-Control", "no-store")
	}
	w.WriteHeader(status)
	w.Write(b)
}
