package testutil

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"

	"github.com/checkout-backend/checkout/graph/gqlhttp"
	"github.com/checkout-backend/checkout/internal/feed"
	clog "github.com/checkout-backend/checkout/internal/platform/log"
)

// WSMessage is a graphql-transport-ws message.
type WSMessage struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// WSClient is a real graphql-transport-ws client.
type WSClient struct {
	Conn *websocket.Conn
}

// DialWS connects to url (http://.../graphql) and completes connection_init with token
// ("" sends no Authorization). It returns the close status when the server refuses.
func DialWS(ctx context.Context, url, token string) (*WSClient, websocket.StatusCode, error) {
	return DialWSWith(ctx, url, token, WSOptions{})
}

// WSOptions tune DialWSWith.
type WSOptions struct {
	// ReceiveBuffer, when set, is the socket's SO_RCVBUF: a client that stops reading
	// then pushes back on the server after a few kilobytes rather than megabytes.
	ReceiveBuffer int
}

// DialWSWith is DialWS with options.
func DialWSWith(ctx context.Context, url, token string, opt WSOptions) (*WSClient, websocket.StatusCode, error) {
	dopt := &websocket.DialOptions{Subprotocols: []string{"graphql-transport-ws"}}
	if opt.ReceiveBuffer > 0 {
		d := &net.Dialer{Control: sockopt(syscall.SO_RCVBUF, opt.ReceiveBuffer)}
		dopt.HTTPClient = &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
	}
	conn, _, err := websocket.Dial(ctx, strings.Replace(url, "http", "ws", 1), dopt)
	if err != nil {
		return nil, 0, err
	}
	conn.SetReadLimit(1 << 20)
	payload := map[string]any{}
	if token != "" {
		payload["Authorization"] = "Bearer " + token
	}
	if err := wsjson.Write(ctx, conn, map[string]any{"type": "connection_init", "payload": payload}); err != nil {
		return nil, websocket.CloseStatus(err), err
	}
	for {
		var m WSMessage
		if err := wsjson.Read(ctx, conn, &m); err != nil {
			return nil, websocket.CloseStatus(err), err
		}
		if m.Type == "connection_ack" {
			return &WSClient{Conn: conn}, 0, nil
		}
	}
}

// Subscribe starts a subscription.
func (c *WSClient) Subscribe(ctx context.Context, id, query string, vars map[string]any) error {
	return wsjson.Write(ctx, c.Conn, map[string]any{"id": id, "type": "subscribe", "payload": map[string]any{"query": query, "variables": vars}})
}

// Next reads the next message that is not a ping (answering pings).
func (c *WSClient) Next(ctx context.Context) (WSMessage, error) {
	for {
		var m WSMessage
		if err := wsjson.Read(ctx, c.Conn, &m); err != nil {
			return m, err
		}
		switch m.Type {
		case "ping":
			wsjson.Write(ctx, c.Conn, map[string]any{"type": "pong"})
		case "pong":
		default:
			return m, nil
		}
	}
}

// Close closes the connection.
func (c *WSClient) Close() { c.Conn.Close(websocket.StatusNormalClosure, "bye") }

// Instance is one more API instance over the stack's database and broker, with a status
// feed of its own, served over real HTTP.
type Instance struct {
	URL  string
	Feed *feed.Feed
}

// InstanceOptions tune NewInstance.
type InstanceOptions struct {
	// SendBuffer, when set, is the SO_SNDBUF of every connection the instance accepts,
	// so that a client that stops reading blocks the server's writes after kilobytes.
	SendBuffer int
	// Sockets configure the instance's WebSocket connections; zero: defaults.
	Sockets gqlhttp.SocketOptions
}

// NewInstance starts an API instance (its own feed queue) on an httptest server.
func (s *Stack) NewInstance(t testing.TB, opts ...InstanceOptions) *Instance {
	t.Helper()
	var opt InstanceOptions
	if len(opts) > 0 {
		opt = opts[0]
	}
	logger := clog.New(testWriter{t}, 0)
	fb := NewBroker(t, AMQPURL(), s.Topology)
	f := feed.New(fb, s.Orders, 16, logger)
	s.Go(f.Run)
	api := NewAPI(t, s.DB, APIOptions{TTL: s.ttl, Feed: f, Sockets: opt.Sockets})
	srv := httptest.NewUnstartedServer(api.Handler)
	if opt.SendBuffer > 0 {
		// Accepted connections inherit the listening socket's buffer size.
		lc := net.ListenConfig{Control: sockopt(syscall.SO_SNDBUF, opt.SendBuffer)}
		l, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv.Listener.Close()
		srv.Listener = l
	}
	srv.Start()
	t.Cleanup(srv.Close)
	// Wait until the feed's queue is bound, so no event is missed by a test.
	Eventually(t, 10*time.Second, "the status feed connected", f.Ready)
	return &Instance{URL: srv.URL + "/graphql", Feed: f}
}

// sockopt sets the socket option opt (SOL_SOCKET) to n before the socket connects or
// listens.
func sockopt(opt, n int) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, c syscall.RawConn) error {
		var err error
		if cerr := c.Control(func(fd uintptr) { err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, opt, n) }); cerr != nil {
			return cerr
		}
		return err
	}
}

// Post sends a GraphQL request over real HTTP.
func (i *Instance) Post(t testing.TB, token, query string, vars map[string]any) (json.RawMessage, error) {
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, _ := http.NewRequest(http.MethodPost, i.URL, strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Data   json.RawMessage `json:"data"`
		Errors []any           `json:"errors"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, err
	}
	if len(r.Errors) > 0 {
		return r.Data, fmt.Errorf("graphql errors: %v", r.Errors)
	}
	return r.Data, nil
}
