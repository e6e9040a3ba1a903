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

// Stall keeps the connections open but lets no byte through either way (toxiproxy's
// timeout toxic with no timeout): the dependency hangs rather than goes away.
func (p *Proxy) Stall() {
	p.t.Helper()
	for _, dir := range []string{"upstream", "downstream"} {
		if _, err := p.p.AddToxic("stall-"+dir, "timeout", dir, 1, toxiclient.Attributes{"timeout": 0}); err != nil {
			p.t.Fatalf("proxy stall: %v", err)
		}
	}
}

// Unstall lets the bytes through again.
func (p *Proxy) Unstall() {
	p.t.Helper()
	for _, dir := range []string{"upstream", "downstream"} {
		if err := p.p.RemoveToxic("stall-" + dir); err != nil {
			p.t.Fatalf("proxy unstall: %v", err)
		}
	}
}
