package auth_test

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
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
	dir := b.TempDir()
	srv, _ := ca.Issue(tlsx.Leaf{CommonName: "localhost", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true})
	certFile, keyFile, caFile := filepath.Join(dir, "s.crt"), filepath.Join(dir, "s.key"), filepath.Join(dir, "ca.crt")
	srv.WriteFiles(certFile, keyFile)
	os.WriteFile(caFile, ca.PEM, 0o644)
	_, cas, err := tlsx.ServerWithClientCAs(tlsx.ServerOptions{CertFile: certFile, KeyFile: keyFile, ClientCAFile: caFile,
		ClientAuth: tlsx.OptionalClientCert, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
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
