package gqlhttp

// What this file adds to gqlgen's transport.Websocket, which speaks graphql-transport-ws
// and graphql-ws, runs connection_init, pings and closes: only graphql-transport-ws, the
// contract's protocol (the legacy graphql-ws has no ping deadline: a silent socket of it
// stayed open); a connection_init timeout and ping/pong read deadline turned on by
// default; a write deadline on the hijacked connection (the http.Server's deadlines end
// at the hijack); caps per client on open sockets and on subscriptions; the close of a
// socket when the token of its connection_init expires; a token of its client's rate
// taken by every operation a socket sends, before it is parsed, and the close of a socket
// that keeps sending past its rate; and the refusal of queries and mutations over a
// socket (they go over HTTP, through the rate limits and bulkheads), before validation
// when the document's tokens tell its operation's type.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"github.com/vektah/gqlparser/v2/lexer"
)

// Subprotocol is the only WebSocket subprotocol served: graphql-transport-ws, the
// protocol of the graphql-ws library.
const Subprotocol = "graphql-transport-ws"

// MaxRateLimitedInARow is how many operations in a row a socket may send past its
// client's rate: the next one closes it with CloseTooManyRequests.
const MaxRateLimitedInARow = 5

// Defaults of SocketOptions.
const (
	DefaultSocketInitTimeout  = 5 * time.Second
	DefaultSocketPingInterval = 15 * time.Second
	DefaultSocketWriteTimeout = 10 * time.Second
)

// Close codes of a socket (graphql-transport-ws): 4401 when connection_init carries no
// token, 4403 when the token cannot be trusted or has expired, 4429 when its client
// already has MaxPerClient sockets or the socket kept sending operations past its
// client's rate (more than MaxRateLimitedInARow refused in a row).
const (
	CloseUnauthorized    = 4401
	CloseForbidden       = 4403
	CloseTooManySockets  = 4429
	CloseTooManyRequests = 4429
)

// SocketOptions configure the WebSocket connections of subscriptions. Zero timeouts take
// their defaults; zero caps mean no cap.
type SocketOptions struct {
	// InitTimeout closes a socket whose connection_init has not come in time.
	InitTimeout time.Duration
	// PingInterval is how often the server pings (graphql-transport-ws); a socket that
	// has not answered within twice the interval is closed.
	PingInterval time.Duration
	// WriteTimeout closes a socket a write to which blocks longer (a client that stopped
	// reading).
	WriteTimeout time.Duration
	// MaxPerClient caps the open sockets of one client: by ClientKey until
	// connection_init (sockets waiting for it, per address), then by the identity it
	// authenticated.
	MaxPerClient int
	// MaxSubscriptionsPerClient caps the running subscriptions of one client (the
	// identity connection_init authenticated), over all its sockets.
	MaxSubscriptionsPerClient int
	// ClientKey names the client of an upgrade request (default: its peer address).
	ClientKey func(*http.Request) string
	// Allow, when set, takes a token of a client's rate for each operation a socket
	// sends (before it is parsed), or says how long until one is there
	// (overload.Shedder.AllowKey).
	Allow func(key string) (time.Duration, bool)
}

// SocketIdentity is what connection_init authenticated: the client key its subscriptions
// count against, and when its token stops being valid (zero: never).
type SocketIdentity struct {
	Key        string
	ValidUntil time.Time
	// Revoked, when not nil, is closed once the identity stops being valid before
	// ValidUntil (a client certificate the reloaded client CA no longer vouches for): the
	// socket closes then too (4403).
	Revoked <-chan struct{}
}

// SocketAuthFunc authenticates a connection_init payload. An error refuses the socket,
// with the close code and reason set on the returned context
// (transport.WithWebsocketCloseCode, transport.AppendCloseReason).
type SocketAuthFunc func(ctx context.Context, p transport.InitPayload) (context.Context, SocketIdentity, error)

// Sockets holds the state of the open sockets; safe for concurrent use.
type Sockets struct {
	opt     SocketOptions
	now     func() time.Time
	mu      sync.Mutex
	sockets map[string]int
	subs    map[string]int
}

// NewSockets returns a Sockets for o; now is its clock (when an identity's token stops
// being valid). The clock is a dependency, never defaulted: a nil one panics (a
// programming error).
func NewSockets(o SocketOptions, now func() time.Time) *Sockets {
	if now == nil {
		panic("gqlhttp: NewSockets with a nil clock")
	}
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.InitTimeout, DefaultSocketInitTimeout)
	def(&o.PingInterval, DefaultSocketPingInterval)
	def(&o.WriteTimeout, DefaultSocketWriteTimeout)
	if o.ClientKey == nil {
		o.ClientKey = func(r *http.Request) string {
			host, _, err := net.SplitHostPort(r.RemoteAddr)
			if err != nil {
				host = r.RemoteAddr
			}
			return "ip:" + host
		}
	}
	return &Sockets{opt: o, now: now, sockets: map[string]int{}, subs: map[string]int{}}
}

// socket is the state of one socket, in its request's context.
type socket struct {
	key     string // the client it counts against
	conn    *conn
	id      SocketIdentity
	cancel  context.CancelFunc // ends the connection's context (set by connection_init)
	limited atomic.Int32       // operations refused in a row for the client's rate
}

// close closes the socket with a close code, ending its subscriptions.
func (sock *socket) close(code int, reason string) {
	if sock.conn != nil {
		sock.conn.WriteClose(code, reason)
	}
	if sock.cancel != nil {
		sock.cancel()
	}
}

type socketKey struct{}

// Open returns the sockets open for a client key (metrics and tests).
func (s *Sockets) Open(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sockets[key]
}

// Subscriptions returns the running subscriptions of a client key.
func (s *Sockets) Subscriptions(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.subs[key]
}

// take counts one more in m[key] unless that would pass limit (0: no limit).
func (s *Sockets) take(m map[string]int, key string, limit int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if limit > 0 && m[key] >= limit {
		return false
	}
	m[key]++
	return true
}

func (s *Sockets) give(m map[string]int, key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m[key]--; m[key] <= 0 {
		delete(m, key)
	}
}

// Middleware refuses an upgrade that does not offer Subprotocol (400, before the
// upgrade: gqlgen's transport would speak the legacy graphql-ws to it, or to a client
// offering no subprotocol), and counts the sockets of each client: an upgrade past
// MaxPerClient is answered 429 before it becomes a socket (connection_init moves the count to the identity it
// authenticates, and closes the socket with 4429 past MaxPerClient). Other requests pass.
func (s *Sockets) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") == "" {
			next.ServeHTTP(w, r)
			return
		}
		if !offers(r, Subprotocol) {
			writeErrors(w, MediaJSON, http.StatusBadRequest, newError(CodeBadRequest,
				"WebSocket connections must use the subprotocol %s (Sec-WebSocket-Protocol: %s)", Subprotocol, Subprotocol))
			return
		}
		key := s.opt.ClientKey(r)
		if !s.take(s.sockets, key, s.opt.MaxPerClient) {
			w.Header().Set("Retry-After", "5")
			writeErrors(w, MediaJSON, http.StatusTooManyRequests, newError(CodeTooManySockets,
				"this client has %d sockets open, the limit: close one, or follow several orders over one socket", s.opt.MaxPerClient))
			return
		}
		sock := &socket{key: key}
		defer func() { s.give(s.sockets, sock.key) }()
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), socketKey{}, sock)))
	})
}

// offers reports whether an upgrade request lists subprotocol in Sec-WebSocket-Protocol.
func offers(r *http.Request, subprotocol string) bool {
	for _, v := range r.Header.Values("Sec-WebSocket-Protocol") {
		for p := range strings.SplitSeq(v, ",") {
			if strings.TrimSpace(p) == subprotocol {
				return true
			}
		}
	}
	return false
}

// Transport is gqlgen's WebSocket transport with these options; auth authenticates
// connection_init. The socket closes (4403) when the identity's ValidUntil passes.
// Operations go through the socket's rules (rate, subscriptions only) before gqlgen
// parses them.
func (s *Sockets) Transport(auth SocketAuthFunc) graphql.Transport {
	ws := transport.Websocket{
		Implementation:   implementation{timeout: s.opt.WriteTimeout},
		InitTimeout:      s.opt.InitTimeout,
		PingPongInterval: s.opt.PingInterval,
		InitFunc: func(ctx context.Context, p transport.InitPayload) (context.Context, *transport.InitPayload, error) {
			ctx, id, err := auth(ctx, p)
			if err != nil {
				return ctx, nil, err
			}
			sock, _ := ctx.Value(socketKey{}).(*socket)
			if sock == nil {
				return ctx, nil, nil
			}
			if id.Key != "" && id.Key != sock.key {
				if !s.take(s.sockets, id.Key, s.opt.MaxPerClient) {
					ctx = transport.AppendCloseReason(transport.WithWebsocketCloseCode(ctx, CloseTooManySockets), "Too many sockets")
					return ctx, nil, fmt.Errorf("%s: this client has %d sockets open, the limit", CodeTooManySockets, s.opt.MaxPerClient)
				}
				s.give(s.sockets, sock.key)
				sock.key = id.Key
			}
			sock.id = id
			ctx, sock.cancel = context.WithCancel(ctx)
			if !id.ValidUntil.IsZero() {
				expire := time.AfterFunc(id.ValidUntil.Sub(s.now()), func() {
					sock.close(CloseForbidden, "Forbidden: the token has expired")
				})
				context.AfterFunc(ctx, func() { expire.Stop() })
			}
			if id.Revoked != nil {
				go func() {
					select {
					case <-id.Revoked:
						sock.close(CloseForbidden, "Forbidden: the credentials are no longer valid")
					case <-ctx.Done():
					}
				}()
			}
			return ctx, nil, nil
		},
	}
	return WithExecutor(ws, func(e graphql.GraphExecutor) graphql.GraphExecutor { return socketExecutor{e, s} })
}

// socketExecutor holds each operation a socket sends to the socket's rules before gqlgen
// parses and validates it: a token of the client's rate, an unexpired token, and (when
// the document's tokens tell) a subscription.
type socketExecutor struct {
	graphql.GraphExecutor
	s *Sockets
}

func (e socketExecutor) CreateOperationContext(ctx context.Context, p *graphql.RawParams) (*graphql.OperationContext, gqlerror.List) {
	sock, _ := ctx.Value(socketKey{}).(*socket)
	if sock == nil {
		return e.GraphExecutor.CreateOperationContext(ctx, p)
	}
	refuse := func(err *gqlerror.Error) (*graphql.OperationContext, gqlerror.List) {
		oc := &graphql.OperationContext{RawQuery: p.Query, OperationName: p.OperationName, Variables: p.Variables,
			Stats: graphql.Stats{Read: p.ReadTime, OperationStart: graphql.GetStartTime(ctx)}}
		return oc, gqlerror.List{err}
	}
	if !sock.id.ValidUntil.IsZero() && !e.s.now().Before(sock.id.ValidUntil) {
		return refuse(newError(CodeUnauthenticated, "the token of this connection has expired: connect again with a new one"))
	}
	if allow := e.s.opt.Allow; allow != nil {
		key := sock.id.Key
		if key == "" {
			key = sock.key
		}
		if wait, ok := allow(key); !ok {
			if sock.limited.Add(1) > MaxRateLimitedInARow {
				sock.close(CloseTooManyRequests, "Too many requests")
			}
			err := newError(CodeRateLimited, "too many requests from this client; retry later")
			err.Extensions["retryAfter"] = max(1, int(math.Ceil(wait.Seconds())))
			return refuse(err)
		}
		sock.limited.Store(0)
	}
	if op, ok := operationType(p.Query, p.OperationName); ok && op != ast.Subscription {
		return refuse(subscriptionsOnly())
	}
	return e.GraphExecutor.CreateOperationContext(ctx, p)
}

func subscriptionsOnly() *gqlerror.Error {
	return newError(CodeSubscriptionsOnly,
		"only subscriptions are served over WebSocket: send queries and mutations over HTTP (POST /graphql)")
}

// operationType tells, from the tokens of a document alone, the type of the operation
// name selects (the only one when name is ""); ok is false when the tokens do not tell
// (a lexical error, no such operation, several without a name): gqlgen then parses the
// document and answers.
func operationType(doc, name string) (_ ast.Operation, ok bool) {
	if doc == "" {
		return "", false
	}
	type op struct {
		typ  ast.Operation
		name string
	}
	var ops []op
	l := lexer.New(&ast.Source{Input: doc})
	braces, parens := 0, 0
	start := true   // at depth 0, where a definition begins
	naming := false // the token after query, mutation or subscription
	for {
		tok, err := l.ReadToken()
		if err != nil {
			return "", false
		}
		if naming {
			naming = false
			if tok.Kind == lexer.Name {
				ops[len(ops)-1].name = tok.Value
				continue
			}
		}
		switch tok.Kind {
		case lexer.EOF:
			var found []op
			for _, o := range ops {
				if name == "" || o.name == name {
					found = append(found, o)
				}
			}
			if len(found) != 1 {
				return "", false
			}
			return found[0].typ, true
		case lexer.Name:
			if start && braces == 0 && parens == 0 {
				start = false
				switch tok.Value {
				case "query", "mutation", "subscription":
					ops = append(ops, op{typ: ast.Operation(tok.Value)})
					naming = true
				}
			}
		case lexer.ParenL:
			parens++
		case lexer.ParenR:
			parens--
		case lexer.BraceL:
			if start && braces == 0 && parens == 0 {
				ops = append(ops, op{typ: ast.Query}) // the shorthand of an anonymous query
			}
			start = false
			braces++
		case lexer.BraceR:
			if braces--; braces == 0 && parens == 0 {
				start = true
			}
		}
	}
}

// Extension is the gqlgen extension that holds operations over a socket to these rules;
// it lets HTTP requests pass.
func (s *Sockets) Extension() graphql.HandlerExtension { return socketGuard{s} }

type socketGuard struct{ s *Sockets }

var _ interface {
	graphql.HandlerExtension
	graphql.OperationInterceptor
} = socketGuard{}

func (g socketGuard) ExtensionName() string                   { return "SocketGuard" }
func (g socketGuard) Validate(graphql.ExecutableSchema) error { return nil }

// InterceptOperation refuses what a socket does not carry (an operation the tokens did
// not tell, such as a persisted query's), and counts the subscription against its
// client until it ends.
func (g socketGuard) InterceptOperation(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
	sock, _ := ctx.Value(socketKey{}).(*socket)
	if sock == nil {
		return next(ctx)
	}
	refuse := func(e *gqlerror.Error) graphql.ResponseHandler {
		return graphql.OneShot(&graphql.Response{Errors: gqlerror.List{e}})
	}
	o := g.s.opt
	if !sock.id.ValidUntil.IsZero() && !g.s.now().Before(sock.id.ValidUntil) || revoked(sock.id.Revoked) {
		return refuse(newError(CodeUnauthenticated, "the token of this connection has expired: connect again with a new one"))
	}
	if op := graphql.GetOperationContext(ctx).Operation; op == nil || op.Operation != ast.Subscription {
		return refuse(subscriptionsOnly())
	}
	if !g.s.take(g.s.subs, sock.id.Key, o.MaxSubscriptionsPerClient) {
		return refuse(newError(CodeTooManySubscriptions,
			"this client has %d subscriptions running, the limit: complete one first", o.MaxSubscriptionsPerClient))
	}
	context.AfterFunc(ctx, func() { g.s.give(g.s.subs, sock.id.Key) })
	return next(ctx)
}

// implementation is gqlgen's coder/websocket adapter, with a write deadline on the
// hijacked connection.
type implementation struct{ timeout time.Duration }

func (i implementation) Accept(w http.ResponseWriter, r *http.Request, o transport.WebsocketAcceptOptions) (transport.WebsocketConn, error) {
	// A client offering both protocols gets graphql-transport-ws (gqlgen lists graphql-ws
	// first).
	o.Subprotocols = []string{Subprotocol}
	hw := &hijackWriter{ResponseWriter: w}
	wc, err := transport.CoderWebsocketImplementation{}.Accept(hw, r, o)
	if err != nil {
		return nil, err
	}
	if hw.raw == nil {
		return nil, errors.New("websocket: the connection was not hijacked")
	}
	c := &conn{WebsocketConn: wc, raw: hw.raw, timeout: i.timeout}
	if sock, _ := r.Context().Value(socketKey{}).(*socket); sock != nil {
		sock.conn = c
	}
	return c, nil
}

// hijackWriter keeps the connection it hands over.
type hijackWriter struct {
	http.ResponseWriter
	raw net.Conn
}

func (w *hijackWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	w.raw = c
	return c, brw, err
}

// conn bounds each write by a deadline on the raw connection.
type conn struct {
	transport.WebsocketConn
	raw     net.Conn
	timeout time.Duration
	mu      sync.Mutex // WriteJSON and WriteClose come from several goroutines
}

func (c *conn) write(f func() error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.raw.SetWriteDeadline(time.Now().Add(c.timeout))
	defer c.raw.SetWriteDeadline(time.Time{})
	return f()
}

func (c *conn) WriteJSON(v any) error {
	return c.write(func() error { return c.WebsocketConn.WriteJSON(v) })
}

func (c *conn) WriteClose(code int, reason string) error {
	return c.write(func() error { return c.WebsocketConn.WriteClose(code, reason) })
}

// SetReadLimit and SetReadDeadline reach gqlgen's adapter (the payload limit, and the
// ping/pong deadline).
func (c *conn) SetReadLimit(n int64) {
	if l, ok := c.WebsocketConn.(transport.WebsocketReadLimiter); ok {
		l.SetReadLimit(n)
	}
}

func (c *conn) SetReadDeadline(t time.Time) error {
	if d, ok := c.WebsocketConn.(transport.WebsocketReadDeadliner); ok {
		return d.SetReadDeadline(t)
	}
	return nil
}

// revoked reports whether c is closed (a nil channel never is).
func revoked(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
