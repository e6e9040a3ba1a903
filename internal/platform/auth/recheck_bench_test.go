package auth_test

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/checkout-backend/checkout/internal/platform/auth"
	"github.com/checkout-backend/checkout/internal/platform/tlsx"
)

// BenchmarkPartnerCerts_RequestOnKeptAliveConnection is the cost of PartnerCerts.Middleware
// for one request of a partner's kept-alive connection: without a re-check (the
// handshake's word, as before), and with one against the current client CA (a stat of
// the listener's files and a cached verdict).
func BenchmarkPartnerCerts_RequestOnKeptAliveConnection(b *testing.B) {
	ca, err := tlsx.NewCA("partners ca", time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	opt, err := ca.LocalServer(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	opt.ClientAuth, opt.Logger = tlsx.OptionalClientCert, slog.New(slog.NewTextHandler(io.Discard, nil))
	_, cas, err := tlsx.ServerWithClientCAs(opt)
	if err != nil {
		b.Fatal(err)
	}
	acme, _ := ca.Issue(tlsx.Leaf{CommonName: "acme", Client: true})
	cs := &tls.ConnectionState{PeerCertificates: []*x509.Certificate{acme.Cert}, VerifiedChains: [][]*x509.Certificate{{acme.Cert, ca.Cert}}}
	for name, recheck := range map[string]*auth.Recheck{"handshake only": nil, "rechecked": {ClientCAs: cas}} {
		b.Run(name, func(b *testing.B) {
			p, _ := auth.NewPartnerCerts([]string{"cn:acme"})
			if recheck != nil {
				p.WithRecheck(*recheck)
			}
			h := p.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
			r := httptest.NewRequest(http.MethodGet, "/graphql", nil)
			r.TLS = cs
			w := httptest.NewRecorder()
			for b.Loop() {
				h.ServeHTTP(w, r)
			}
		})
	}
}
