package graph_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"

	"github.com/checkout-backend/checkout/graph/gqlhttp"
	"github.com/checkout-backend/checkout/internal/platform/auth"
	"github.com/checkout-backend/checkout/internal/platform/tlsx"
	"github.com/checkout-backend/checkout/internal/testutil"
)

// TestL12_PartnerSocket_ClosedWhenItsCertificateExpiresOrItsCAIsRotatedAway: a socket a
// partner opened with its certificate alone closes (4403) when the certificate's notAfter
// passes, and when the client CA file is replaced by one that no longer vouches for it.
func TestL12_PartnerSocket_ClosedWhenItsCertificateExpiresOrItsCAIsRotatedAway(t *testing.T) {
	t.Parallel()
	rig := newSocketRig(t, testutil.APIOptions{})
	ca, err := tlsx.NewCA("partners ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	opt, err := ca.LocalServer(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	caFile := opt.ClientCAFile
	opt.ClientAuth, opt.Logger = tlsx.OptionalClientCert, slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg, cas, err := tlsx.ServerWithClientCAs(opt)
	if err != nil {
		t.Fatal(err)
	}
	partners, err := auth.NewPartnerCerts([]string{"cn:acme"})
	if err != nil {
		t.Fatal(err)
	}
	partners.WithRecheck(auth.Recheck{ClientCAs: cas, Every: 50 * time.Millisecond})
	ts := httptest.NewUnstartedServer(partners.Middleware(rig.api.Handler))
	ts.TLS = cfg
	ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	ts.StartTLS()
	t.Cleanup(ts.Close)

	// open dials a socket as the partner holding cert, with no token, and subscribes.
	open := func(ctx context.Context, t *testing.T, cert *tlsx.Issued) *testutil.WSClient {
		t.Helper()
		roots := x509.NewCertPool()
		roots.AddCert(ca.Cert)
		pair, err := tls.X509KeyPair(cert.CertPEM, cert.KeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}}}}
		conn, _, err := websocket.Dial(ctx, strings.Replace(ts.URL, "https", "wss", 1)+"/graphql",
			&websocket.DialOptions{Subprotocols: []string{"graphql-transport-ws"}, HTTPClient: hc})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.CloseNow() })
		c := &testutil.WSClient{Conn: conn}
		if err := wsjson.Write(ctx, conn, map[string]any{"type": "connection_init", "payload": map[string]any{}}); err != nil {
			t.Fatal(err)
		}
		if m, err := c.Next(ctx); err != nil || m.Type != "connection_ack" {
			t.Fatalf("connection_init with the partner's certificate: %+v %v", m, err)
		}
		if err := c.Subscribe(ctx, "s1", subscription, map[string]any{"id": rig.orderID}); err != nil {
			t.Fatal(err)
		}
		return c
	}
	// closed reads until the socket ends and returns its close code.
	closed := func(ctx context.Context, c *testutil.WSClient) websocket.StatusCode {
		var err error
		for err == nil {
			_, err = c.Next(ctx)
		}
		return websocket.CloseStatus(err)
	}

	t.Run("the certificate expires", func(t *testing.T) {
		// Valid for a few seconds more (NotBefore a minute ago).
		short, err := ca.Issue(tlsx.Leaf{CommonName: "acme", Client: true, NotBefore: time.Now().Add(-time.Minute), Validity: time.Minute + 3*time.Second})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c := open(ctx, t, short)
		if code := closed(ctx, c); code != gqlhttp.CloseForbidden {
			t.Fatalf("close %d, want %d", code, gqlhttp.CloseForbidden)
		}
		if time.Now().Before(short.Cert.NotAfter) {
			t.Fatalf("closed before the certificate's notAfter %v", short.Cert.NotAfter)
		}
	})

	t.Run("the CA is rotated away", func(t *testing.T) {
		acme, err := ca.Issue(tlsx.Leaf{CommonName: "acme", Client: true})
		if err != nil {
			t.Fatal(err)
		}
		other, err := tlsx.NewCA("the next partners ca", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c := open(ctx, t, acme)
		next := caFile + ".next"
		if err := os.WriteFile(next, other.PEM, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(next, caFile); err != nil {
			t.Fatal(err)
		}
		if code := closed(ctx, c); code != gqlhttp.CloseForbidden {
			t.Fatalf("after the CA was rotated away: close %d, want %d", code, gqlhttp.CloseForbidden)
		}
	})
}
