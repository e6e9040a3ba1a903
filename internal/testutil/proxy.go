package testutil

import (
	"testing"

	toxiclient "github.com/Shopify/toxiproxy/v2/client"
)

// Proxy is a toxiproxy proxy a test puts between the service and a dependency, to cut
// the connection (Cut) and bring it back (Restore) without touching the shared server.
type Proxy struct {
	t testing.TB
	p *toxiclient.Proxy
}

// NewProxy starts a toxiproxy of the test's own forwarding to target (host:port).
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	return &Proxy{t: t, p: NewToxiproxy(t).Proxy(t, "dependency", target)}
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.p.Listen }

// Cut stops listening and drops every open connection: the dependency is gone.
func (p *Proxy) Cut() {
	p.t.Helper()
	if err := p.p.Disable(); err != nil {
		p.t.Fatalf("proxy cut: %v", err)
	}
}

// Restore listens again on the same address.
func (p *Proxy) Restore() {
	p.t.Helper()
	if err := p.p.Enable(); err != nil {
		p.t.Fatalf("proxy restore: %v", err)
	}
}
