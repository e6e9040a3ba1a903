package node_test

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/checkout-backend/checkout/internal/node"
	"github.com/checkout-backend/checkout/internal/testutil"
)

// namedServer answers every TCP connection with its name; its health check answers 200
// while healthy is true.
type namedServer struct {
	name    string
	ln      net.Listener
	health  *httptest.Server
	healthy atomic.Bool
}

func newNamedServer(t *testing.T, name string, healthy bool) *namedServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &namedServer{name: name, ln: ln}
	s.healthy.Store(healthy)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte(name))
			c.Close()
		}
	}()
	s.health = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.healthy.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(func() { ln.Close(); s.health.Close() })
	return s
}

func (s *namedServer) server() node.HAProxyServer {
	return node.HAProxyServer{Name: s.name, Addr: s.ln.Addr().String(), CheckAddr: s.health.Listener.Addr().String()}
}

func dialName(addr string) string {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return ""
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	b, _ := io.ReadAll(c)
	return string(b)
}

// TestHAProxy_FollowsTheHealthCheck_AndSurvivesARestart: connections go to the server
// whose health check answers 200 (Patroni's /primary); when the check moves to the
// other server, so do new connections, within a few checks; a killed proxy restarted on
// its configuration serves the same port again.
func TestHAProxy_FollowsTheHealthCheck_AndSurvivesARestart(t *testing.T) {
	t.Parallel()
	a, b := newNamedServer(t, "a", true), newNamedServer(t, "b", false)
	h := node.StartHAProxy(t, node.HAProxyOptions{Frontends: []node.HAProxyFrontend{
		{Name: "primary", Check: "/primary", Servers: []node.HAProxyServer{a.server(), b.server()}}}})
	addr := h.Addr("primary")
	testutil.Eventually(t, 10*time.Second, "connections reach a, the healthy one", func() bool { return dialName(addr) == "a" })
	for range 10 {
		if got := dialName(addr); got != "a" {
			t.Fatalf("a connection reached %q while only a is healthy", got)
		}
	}
	a.healthy.Store(false)
	b.healthy.Store(true)
	testutil.Eventually(t, 10*time.Second, "connections move to b once its check passes and a's fails", func() bool { return dialName(addr) == "b" })
	h.Kill()
	if got := dialName(addr); got != "" {
		t.Fatalf("a connection through a killed proxy reached %q", got)
	}
	if err := h.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the restarted proxy serves b", func() bool { return dialName(addr) == "b" })
}
