package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
)

// wsMessage is a graphql-transport-ws message.
type wsMessage struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// wsClient is one graphql-transport-ws connection (the protocol of the graphql-ws
// library), read by one goroutine.
type wsClient struct {
	conn *websocket.Conn
}

// handshakeError is a refused WebSocket handshake.
type handshakeError struct{ status int }

func (e handshakeError) Error() string { return fmt.Sprintf("handshake answered HTTP %d", e.status) }

// dialWS connects to the service's /graphql (baseURL http://host:port) and completes
// connection_init with token. The token goes in the handshake's Authorization header
// too (as non-browser clients may send it), so that the service's per-client rate
// limit counts the subscriber by its subject rather than by its IP address: every
// bench subscriber comes from 127.0.0.1.
func dialWS(ctx context.Context, baseURL, token string) (*wsClient, error) {
	u := "ws" + strings.TrimPrefix(baseURL, "http") + "/graphql"
	conn, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{
		Subprotocols: []string{"graphql-transport-ws"},
		HTTPHeader:   http.Header{"Authorization": {"Bearer " + token}},
	})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return nil, handshakeError{resp.StatusCode}
		}
		return nil, err
	}
	conn.SetReadLimit(1 << 20)
	c := &wsClient{conn: conn}
	if err := wsjson.Write(ctx, conn, map[string]any{"type": "connection_init", "payload": map[string]any{"Authorization": "Bearer " + token}}); err != nil {
		c.closeNow()
		return nil, err
	}
	for {
		m, _, err := c.next(ctx)
		if err != nil {
			c.closeNow()
			return nil, err
		}
		if m.Type == "connection_ack" {
			return c, nil
		}
	}
}

// subscribe starts the subscription id.
func (c *wsClient) subscribe(ctx context.Context, id, query string, vars map[string]any) error {
	return wsjson.Write(ctx, c.conn, map[string]any{"id": id, "type": "subscribe", "payload": map[string]any{"query": query, "variables": vars}})
}

// next reads the next message that is not a ping or a pong (answering pings), and when
// it arrived (taken before decoding).
func (c *wsClient) next(ctx context.Context) (wsMessage, time.Time, error) {
	for {
		_, b, err := c.conn.Read(ctx)
		at := time.Now()
		if err != nil {
			return wsMessage{}, at, err
		}
		var m wsMessage
		if err := json.Unmarshal(b, &m); err != nil {
			return m, at, err
		}
		switch m.Type {
		case "ping":
			if err := wsjson.Write(ctx, c.conn, map[string]any{"type": "pong"}); err != nil {
				return m, at, err
			}
		case "pong":
		default:
			return m, at, nil
		}
	}
}

// close ends the connection with a close handshake.
func (c *wsClient) close() { c.conn.Close(websocket.StatusNormalClosure, "bye") }

// closeNow drops the connection without a handshake.
func (c *wsClient) closeNow() { c.conn.CloseNow() }
