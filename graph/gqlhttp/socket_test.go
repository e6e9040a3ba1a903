package gqlhttp

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/coder/websocket"
	"github.com/vektah/gqlparser/v2/ast"
)

// writeUntilStuck accepts a socket with impl and writes to it until a write fails.
func writeUntilStuck(t *testing.T, impl transport.WebsocketImplementation) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := impl.Accept(w, r, transport.WebsocketAcceptOptions{Subprotocols: []string{"graphql-transport-ws"}})
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		payload := map[string]string{"type": "next", "payload": strings.Repeat("x", 64<<10)}
		for {
			if err := c.WriteJSON(payload); err != nil {
				done <- err
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), &websocket.DialOptions{Subprotocols: []string{"graphql-transport-ws"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.CloseNow() })
	return done // the client never reads
}

// A client that stops reading does not hold a server goroutine (and what it was sent)
// forever: once the socket's buffers are full, a write fails after WriteTimeout.
func TestSocketWrite_ToAClientThatStoppedReading_TimesOut(t *testing.T) {
	t.Parallel()
	done := writeUntilStuck(t, implementation{timeout: 200 * time.Millisecond})
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("the write failed with %v, want the write deadline", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a write to a client that stopped reading is still blocked after 20 s")
	}
}

func TestNewSockets_Defaults(t *testing.T) {
	t.Parallel()
	s := NewSockets(SocketOptions{}, time.Now)
	if s.opt.InitTimeout != DefaultSocketInitTimeout || s.opt.PingInterval != DefaultSocketPingInterval || s.opt.WriteTimeout != DefaultSocketWriteTimeout {
		t.Fatalf("defaults: %+v", s.opt)
	}
	ws := s.Transport(nil).(wrappedTransport).Transport.(transport.Websocket)
	if ws.InitTimeout != DefaultSocketInitTimeout || ws.PingPongInterval != DefaultSocketPingInterval || ws.MissingPongOk {
		t.Fatalf("gqlgen's transport is not configured: %+v", ws)
	}
}

// The clock is a dependency: NewSockets refuses to run without one.
func TestNewSockets_NilClockPanics(t *testing.T) {
	t.Parallel()
	defer func() {
		if r := recover(); r != "gqlhttp: NewSockets with a nil clock" {
			t.Fatalf("NewSockets with a nil clock: recovered %v, want its panic", r)
		}
	}()
	NewSockets(SocketOptions{}, nil)
}

// An operation that reaches a socket after its token's end (before the close has gone
// out) is refused, and nothing of it runs.
func TestSocketGuard_RefusesOperationsAfterTheTokensEnd(t *testing.T) {
	t.Parallel()
	end := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	now := end.Add(-time.Second)
	s := NewSockets(SocketOptions{}, func() time.Time { return now })
	sock := &socket{key: "sub:alice", id: SocketIdentity{Key: "sub:alice", ValidUntil: end}}
	ctx := context.WithValue(context.Background(), socketKey{}, sock)
	ctx = graphql.WithOperationContext(ctx, &graphql.OperationContext{Operation: &ast.OperationDefinition{Operation: ast.Subscription}})
	subCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	ran := 0
	next := func(context.Context) graphql.ResponseHandler {
		ran++
		return graphql.OneShot(&graphql.Response{})
	}
	if resp := s.Extension().(graphql.OperationInterceptor).InterceptOperation(subCtx, next)(subCtx); ran != 1 || len(resp.Errors) != 0 {
		t.Fatalf("within the token's life: ran %d, %v", ran, resp.Errors)
	}
	now = end
	resp := s.Extension().(graphql.OperationInterceptor).InterceptOperation(ctx, next)(ctx)
	if ran != 1 || len(resp.Errors) != 1 || codeOf(resp.Errors[0]) != CodeUnauthenticated {
		t.Fatalf("at the token's end: ran %d, %v", ran, resp.Errors)
	}
}

// The tokens of a document tell the type of the operation that would run, or say they
// cannot (then gqlgen parses the document and answers).
func TestOperationType_FromTokens(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		doc, name string
		want      ast.Operation
		ok        bool
	}{
		{`{ products { sku } }`, "", ast.Query, true},
		{`mutation { createCart { id } }`, "", ast.Mutation, true},
		{`subscription S($id: ID!) { orderStatusChanged(orderId: $id) { id } }`, "", ast.Subscription, true},
		{`query Q($in: In = {a: {b: 1}}) { x } subscription S { y }`, "S", ast.Subscription, true},
		{`query Q($in: In = {a: {b: 1}}) { x } subscription S { y }`, "Q", ast.Query, true},
		{`fragment F on Query { x } query { ...F }`, "", ast.Query, true},
		{`query subscription { x }`, "subscription", ast.Query, true},
		{`query A { x } query B { y }`, "", "", false},
		{`query A { x }`, "B", "", false},
		{`{ x "unterminated`, "", "", false},
		{``, "", "", false},
	} {
		got, ok := operationType(tc.doc, tc.name)
		if got != tc.want || ok != tc.ok {
			t.Errorf("operationType(%q, %q) = %q, %v; want %q, %v", tc.doc, tc.name, got, ok, tc.want, tc.ok)
		}
	}
}
