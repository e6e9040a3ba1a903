package graph_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"

	"github.com/checkout-backend/checkout/graph/gqlhttp"
	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/platform/overload"
	"github.com/checkout-backend/checkout/internal/testutil"
)

// TestH1_ValidationErrorsAreBounded_FailedDocumentsRemembered (H1): the review's
// amplifier, ten fragments of 100 same-named fields with different arguments, was
// 49,510 errors and 12 MB for one anonymous 27 KB request, over POST and GET. It is now
// refused before validation with one error. A document that does reach validation with
// many errors lists at most DefaultMaxErrors of them and says more were cut, and sending
// it again is answered from the failed documents without validating it again.
func TestH1_ValidationErrorsAreBounded_FailedDocumentsRemembered(t *testing.T) {
	t.Parallel()
	v := gqlhttp.NewValidation(gqlhttp.ValidationOptions{})
	api := newTransportAPI(t, testutil.APIOptions{HTTP: gqlhttp.Options{Validation: v}})
	doc := overlappingDocument()
	validations := v.Validations()
	for name, r := range map[string]*httpResult{
		"POST": post(t, api.Handler, map[string]any{"query": doc}),
		"GET":  get(t, api.Handler, url.Values{"query": {doc}}),
	} {
		if len(r.Body) > 2048 || len(r.Errors) != 1 || r.Code() != gqlhttp.CodeTooManyFieldConflicts {
			t.Fatalf("%s of the overlapping document: %d bytes, %d errors, first %q", name, len(r.Body), len(r.Errors), r.Code())
		}
		if ext := r.Errors[0].Extensions; ext["limit"] != float64(gqlhttp.DefaultMaxFieldConflicts) || ext["actual"].(float64) <= ext["limit"].(float64) {
			t.Fatalf("%s: extensions %v", name, ext)
		}
	}
	if n := v.Validations() - validations; n != 0 {
		t.Fatalf("the overlapping document was validated %d times", n)
	}

	// Under every limit, 1,000 unknown fields: one error each.
	many := unknownFields(1000)
	first := post(t, api.Handler, map[string]any{"query": many})
	if n := len(first.Errors); n != gqlhttp.DefaultMaxErrors+1 || len(first.Body) > 8192 {
		t.Fatalf("1,000 unknown fields: %d errors, %d bytes", n, len(first.Body))
	}
	if last := first.Errors[len(first.Errors)-1]; last.Extensions["code"] != gqlhttp.CodeTooManyErrors || last.Extensions["limit"] != float64(gqlhttp.DefaultMaxErrors) {
		t.Fatalf("the last error: %+v", last)
	}
	if first.Errors[0].Extensions["code"] != "GRAPHQL_VALIDATION_FAILED" {
		t.Fatalf("the first error: %+v", first.Errors[0])
	}
	validations, hits := v.Validations(), v.FailedHits()
	again := post(t, api.Handler, map[string]any{"query": many})
	overGET := get(t, api.Handler, url.Values{"query": {many}})
	if again.Body != first.Body || overGET.Body != first.Body {
		t.Fatalf("a repeat answers otherwise:\n%s\n%s\n%s", first.Body, again.Body, overGET.Body)
	}
	if n, h := v.Validations()-validations, v.FailedHits()-hits; n != 0 || h != 2 {
		t.Fatalf("two repeats: validated %d times, %d answered from the failed documents", n, h)
	}
	wantProducts(t, post(t, api.Handler, map[string]any{"query": productsQuery}), mediaJSON)
}

// socketOp sends one operation over a raw socket and reads its answer: the error codes,
// or the close status when the server closed the socket.
func socketOp(ctx context.Context, c *testutil.WSClient, id, query string) (codes []string, data bool, closed websocket.StatusCode, err error) {
	if err := c.Subscribe(ctx, id, query, nil); err != nil {
		return nil, false, websocket.CloseStatus(err), err
	}
	for {
		m, err := c.Next(ctx)
		if err != nil {
			return codes, data, websocket.CloseStatus(err), err
		}
		if m.ID != id {
			continue
		}
		var p struct {
			Data   json.RawMessage
			Errors []struct{ Extensions map[string]any }
		}
		var errs []struct{ Extensions map[string]any }
		switch m.Type {
		case "next":
			json.Unmarshal(m.Payload, &p)
			data = data || (len(p.Data) > 0 && string(p.Data) != "null")
			errs = p.Errors
		case "error":
			json.Unmarshal(m.Payload, &errs)
		}
		for _, e := range errs {
			code, _ := e.Extensions["code"].(string)
			codes = append(codes, code)
		}
		if m.Type == "error" || m.Type == "complete" || data {
			return codes, data, -1, nil
		}
	}
}

// TestM2_SocketOperationsTakeARateTokenBeforeParsing (M2): every operation a socket
// sends takes a token of its client's rate before it is parsed, queries and mutations are
// refused before validation, and a socket that keeps sending past its rate is closed with
// 4429. The review sent 300 refused operations on one socket in 124 ms, none rate
// limited, and four copies of H1's document cost 2.4 CPU-s.
func TestM2_SocketOperationsTakeARateTokenBeforeParsing(t *testing.T) {
	t.Parallel()
	shed := overload.New(overload.Options{Rate: 0.001, Burst: 3, Reject: gqlhttp.Refuse})
	v := gqlhttp.NewValidation(gqlhttp.ValidationOptions{})
	rig := newSocketRig(t, testutil.APIOptions{Overload: shed.Middleware, Sockets: gqlhttp.SocketOptions{Allow: shed.AllowKey},
		HTTP: gqlhttp.Options{Validation: v}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := rig.dial(ctx, t, rig.token)
	validations := v.Validations()
	for i, q := range []string{`{ products { edges { cursor } } }`, `mutation { createCart { id } }`, overlappingDocument()} {
		codes, data, _, err := socketOp(ctx, c, fmt.Sprint("op", i), q)
		if err != nil || data || len(codes) != 1 || codes[0] != gqlhttp.CodeSubscriptionsOnly {
			t.Fatalf("operation %d: codes %v data %v err %v, want %s", i, codes, data, err, gqlhttp.CodeSubscriptionsOnly)
		}
	}
	if n := v.Validations() - validations; n != 0 {
		t.Fatalf("refused operations were validated %d times", n)
	}
	if n := rig.api.Count(t, "SELECT count(*)::int FROM carts"); n > 0 {
		t.Fatalf("%d carts made over the socket", n)
	}
	// The three took the burst: the subscription is past the rate, as is HTTP.
	codes, data, _, err := socketOp(ctx, c, "sub", subscription)
	if err != nil || data || len(codes) != 1 || codes[0] != gqlhttp.CodeRateLimited {
		t.Fatalf("a subscription past the rate: codes %v data %v err %v", codes, data, err)
	}
	if r := rig.api.Do(t, rig.token, `mutation { createCart { id } }`, nil); r.Status != http.StatusTooManyRequests {
		t.Fatalf("HTTP after the socket took the tokens: %d", r.Status)
	}
	// Going on past the rate closes the socket: the subscription above was the first
	// operation refused in a row, so the MaxRateLimitedInARow-th more is one too many.
	// Its answer may come before the close, so the test then sends nothing and waits
	// for the close (on a loaded machine the close can trail the answers).
	for i := 0; i < gqlhttp.MaxRateLimitedInARow; i++ {
		codes, _, closed, err := socketOp(ctx, c, fmt.Sprint("more", i), `{ products { edges { cursor } } }`)
		if err != nil {
			if closed != gqlhttp.CloseTooManyRequests || i < gqlhttp.MaxRateLimitedInARow-1 {
				t.Fatalf("operation %d past the rate: the socket ended with %v (close %d), want the RATE_LIMITED answer", i+2, err, closed)
			}
			return
		}
		if len(codes) != 1 || codes[0] != gqlhttp.CodeRateLimited {
			t.Fatalf("operation %d past the rate: %v", i+2, codes)
		}
	}
	for {
		m, err := c.Next(ctx)
		if err != nil {
			if closed := websocket.CloseStatus(err); closed != gqlhttp.CloseTooManyRequests {
				t.Fatalf("after %d operations past the rate the socket ended with %v (close %d), want close %d",
					gqlhttp.MaxRateLimitedInARow+1, err, closed, gqlhttp.CloseTooManyRequests)
			}
			return
		}
		if m.Type != "ping" && m.Type != "pong" {
			t.Fatalf("after %d operations past the rate: a %s message instead of the close", gqlhttp.MaxRateLimitedInARow+1, m.Type)
		}
	}
}

// TestL7_OnlyTheContractsSubprotocol (L7): the contract names graphql-transport-ws
// alone; the legacy graphql-ws (and no subprotocol) had no ping deadline, so a silent
// socket of it stayed open. They are refused before the upgrade, with a clear error; a
// client offering both gets graphql-transport-ws.
func TestL7_OnlyTheContractsSubprotocol(t *testing.T) {
	t.Parallel()
	rig := newSocketRig(t, testutil.APIOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	wsURL := "ws" + strings.TrimPrefix(rig.url, "http")
	for _, protocols := range [][]string{{"graphql-ws"}, nil, {"graphql-transport-ws-v2"}} {
		conn, resp, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{Subprotocols: protocols})
		if err == nil {
			conn.CloseNow()
			t.Fatalf("subprotocols %v: accepted (%q)", protocols, conn.Subprotocol())
		}
		if resp == nil || resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("subprotocols %v: %v", protocols, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if !bytes.Contains(body, []byte(`"code":"BAD_REQUEST"`)) || !bytes.Contains(body, []byte("graphql-transport-ws")) {
			t.Fatalf("subprotocols %v: %s", protocols, body)
		}
	}
	conn, _, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{Subprotocols: []string{"graphql-ws", "graphql-transport-ws"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	if p := conn.Subprotocol(); p != "graphql-transport-ws" {
		t.Fatalf("offered both: got %q", p)
	}
	if err := wsjson.Write(ctx, conn, map[string]any{"type": "connection_init", "payload": map[string]any{"Authorization": "Bearer " + rig.token}}); err != nil {
		t.Fatal(err)
	}
	var m testutil.WSMessage
	if err := wsjson.Read(ctx, conn, &m); err != nil || m.Type != "connection_ack" {
		t.Fatalf("connection_init: %+v %v", m, err)
	}
}

// TestL10_IDsOnlyInCanonicalForm (L10): uuid.Parse takes "urn:uuid:<id>", "{<id>}" and
// 32 bare hex digits; such an id was an INTERNAL_SERVER_ERROR with an ERROR log line
// (urn), or an order whose subscription never got an update (braces: the feed keys the
// canonical id). Any id not in the canonical 36-character form now reads as not found,
// in queries, mutations and subscriptions, and logs nothing.
func TestL10_IDsOnlyInCanonicalForm(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	rig := newSocketRig(t, testutil.APIOptions{Log: &logs})
	id := rig.orderID
	forms := []string{"urn:uuid:" + id, "{" + id + "}", strings.ReplaceAll(id, "-", ""), "URN:UUID:" + strings.ToUpper(id)}
	cart := createCart(t, rig.api, rig.token)
	for _, bad := range forms {
		r := rig.api.Do(t, rig.token, `query($id: ID!) { order(id: $id) { id } }`, map[string]any{"id": bad})
		if r.Status != http.StatusOK || len(r.Errors) > 0 || !strings.Contains(string(r.Data), `"order":null`) {
			t.Fatalf("order(%q): %d %+v %s", bad, r.Status, r.Errors, r.Data)
		}
		r = rig.api.Do(t, rig.token, `mutation($id: ID!) { cancelOrder(id: $id) { order { id } userErrors { code } } }`, map[string]any{"id": bad})
		if r.Status != http.StatusOK || len(r.Errors) > 0 || !strings.Contains(string(r.Data), `"code":"`+string(checkout.NotFound)+`"`) {
			t.Fatalf("cancelOrder(%q): %d %+v %s", bad, r.Status, r.Errors, r.Data)
		}
		badCart := strings.Replace(bad, id, cart, 1)
		r = rig.api.Do(t, rig.token, `query($id: ID!) { cart(id: $id) { id } }`, map[string]any{"id": badCart})
		if len(r.Errors) > 0 || !strings.Contains(string(r.Data), `"cart":null`) {
			t.Fatalf("cart(%q): %+v %s", badCart, r.Errors, r.Data)
		}
		r = rig.api.Do(t, rig.token, `mutation($id: ID!) { addCartItem(cartId: $id, sku: "SOCK", quantity: 1) { userErrors { code } } }`, map[string]any{"id": badCart})
		if len(r.Errors) > 0 || !strings.Contains(string(r.Data), `"code":"`+string(checkout.CartNotFound)+`"`) {
			t.Fatalf("addCartItem(%q): %+v %s", badCart, r.Errors, r.Data)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := rig.dial(ctx, t, rig.token)
	for i, bad := range forms {
		if r := try(ctx, t, c, fmt.Sprint("s", i), subscription, map[string]any{"id": bad}); len(r.data) > 0 || len(r.codes) == 0 || r.codes[0] != "NOT_FOUND" {
			t.Fatalf("subscription to %q: %+v", bad, r)
		}
	}
	// The canonical form, in upper case too, is still the order.
	if r := rig.api.Do(t, rig.token, `query($id: ID!) { order(id: $id) { id } }`, map[string]any{"id": strings.ToUpper(id)}); !strings.Contains(string(r.Data), id) {
		t.Fatalf("the order by its id in upper case: %+v %s", r.Errors, r.Data)
	}
	if strings.Contains(logs.String(), `"level":"ERROR"`) {
		t.Fatalf("ids in other forms logged errors:\n%s", logs.String())
	}
}

// TestL3_AnswersToCredentialsAreNotCacheable (L3): an answer to a request with
// credentials (a bearer token, or a partner's client certificate) carries
// Cache-Control: private, no-store, so no shared cache keeps one customer's orders for
// another, and every answer varies on Authorization. Anonymous GETs stay as they were.
func TestL3_AnswersToCredentialsAreNotCacheable(t *testing.T) {
	t.Parallel()
	api := newTransportAPI(t)
	tok := testutil.Token(t, "l3-customer")
	const mine = `{ myOrders { edges { node { id } } } }`
	partner := func(req *http.Request) *http.Request {
		req.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{{}}}
		return req
	}
	for name, r := range map[string]*httpResult{
		"GET with a token":  get(t, api.Handler, url.Values{"query": {mine}}, "Authorization", "Bearer "+tok),
		"POST with a token": post(t, api.Handler, map[string]any{"query": mine}, "Authorization", "Bearer "+tok),
		"GET, bad query":    get(t, api.Handler, url.Values{"query": {"{ nope }"}}, "Authorization", "Bearer "+tok, "Accept", mediaGR),
		"GET, partner certificate": serve(t, api.Handler, partner(httptest.NewRequest(http.MethodGet,
			"/graphql?"+url.Values{"query": {productsQuery}}.Encode(), nil))),
	} {
		cc := r.Header.Get("Cache-Control")
		if !strings.Contains(cc, "private") || !strings.Contains(cc, "no-store") || !varies(r.Header, "Authorization") {
			t.Fatalf("%s: %d, Cache-Control %q, Vary %q", name, r.Status, cc, r.Header.Values("Vary"))
		}
	}
	anon := get(t, api.Handler, url.Values{"query": {productsQuery}})
	wantProducts(t, anon, mediaJSON)
	if cc := anon.Header.Get("Cache-Control"); strings.Contains(cc, "private") || strings.Contains(cc, "no-store") || !varies(anon.Header, "Authorization") {
		t.Fatalf("anonymous GET: Cache-Control %q, Vary %q", cc, anon.Header.Values("Vary"))
	}
}

func varies(h http.Header, name string) bool {
	for _, v := range h.Values("Vary") {
		for f := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(f), name) {
				return true
			}
		}
	}
	return false
}
