package testutil

import (
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"testing"
	"time"

	toxiclient "github.com/Shopify/toxiproxy/v2/client"

	"github.com/checkout-backend/checkout/internal/node"
)

// Toxiproxy is a toxiproxy server of the test's own (the go tool pinned in go.mod),
// between the service and a dependency: cut, slow or reset that one connection without
// touching the machine's shared servers.
type Toxiproxy struct {
	Client *toxiclient.Client
}

// NewToxiproxy starts a toxiproxy server on a free loopback port; it stops at cleanup.
func NewToxiproxy(t testing.TB) *Toxiproxy {
	t.Helper()
	toxiBin := ToxiproxyBin(t)
	port := FreePort(t)
	proc, err := node.Start(exec.Command(toxiBin, "-host", "127.0.0.1", "-port", fmt.Sprint(port)), node.StartOptions{})
	if err != nil {
		t.Fatalf("start toxiproxy: %v", err)
	}
	t.Cleanup(proc.Kill)
	endpoint := fmt.Sprintf("http://127.0.0.1:%d", port)
	Eventually(t, 10*time.Second, "toxiproxy to answer at "+endpoint, func() bool {
		resp, err := http.Get(endpoint + "/version")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	return &Toxiproxy{Client: toxiclient.NewClient(endpoint)}
}

// Proxy creates a proxy to upstream (host:port) on a free loopback port.
func (x *Toxiproxy) Proxy(t testing.TB, name, upstream string) *toxiclient.Proxy {
	t.Helper()
	p, err := x.Client.CreateProxy(name, fmt.Sprintf("127.0.0.1:%d", FreePort(t)), upstream)
	if err != nil {
		t.Fatalf("toxiproxy: %v", err)
	}
	return p
}

// FreePort returns a loopback port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
