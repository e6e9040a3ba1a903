package tlsx_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/checkout-backend/checkout/internal/platform/tlsx"
)

// pki is a CA of a test and the files of the certificates it issued.
type pki struct {
	t   testing.TB
	dir string
	ca  *tlsx.CA
	// CA is the CA certificate's file.
	CA string
}

func newPKI(t testing.TB, name string) *pki {
	t.Helper()
	ca, err := tlsx.NewCA(name, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p := &pki{t: t, dir: t.TempDir(), ca: ca}
	p.CA = filepath.Join(p.dir, "ca.crt")
	if err := os.WriteFile(p.CA, ca.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// issue writes a certificate for l as name.crt and name.key and returns their paths.
func (p *pki) issue(name string, l tlsx.Leaf) (cert, key string) {
	p.t.Helper()
	i, err := p.ca.Issue(l)
	if err != nil {
		p.t.Fatal(err)
	}
	cert, key = filepath.Join(p.dir, name+".crt"), filepath.Join(p.dir, name+".key")
	if err := i.WriteFiles(cert, key); err != nil {
		p.t.Fatal(err)
	}
	return cert, key
}

// server issues a certificate for 127.0.0.1 and localhost.
func (p *pki) server(name string) (cert, key string) {
	return p.issue(name, tlsx.Leaf{CommonName: "localhost", DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true})
}

// client issues a client certificate with that CN.
func (p *pki) client(name, cn string, uris ...string) (cert, key string) {
	return p.issue(name, tlsx.Leaf{CommonName: cn, URIs: uris, Client: true})
}

// roots is a pool of the CA alone.
func (p *pki) roots() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.ca.Cert)
	return pool
}

func keyPair(t testing.TB, cert, key string) tls.Certificate {
	t.Helper()
	c, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// quiet is a logger for tests that do not read it.
func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// serve runs an http.Server with cfg on a loopback port, as serve does
// (ListenAndServeTLS with no file names), until the test ends; it returns the address.
func serve(t testing.TB, cfg *tls.Config, h http.Handler) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, TLSConfig: cfg, ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	done := make(chan error, 1)
	go func() { done <- srv.ServeTLS(l, "", "") }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("server: %v", err)
		}
	})
	return l.Addr().String()
}

// handshake dials addr with a fresh TLS client (no session to resume) and returns the
// connection state, or the handshake's error.
func handshake(addr string, c *tls.Config) (tls.ConnectionState, error) {
	d := &net.Dialer{Timeout: 10 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, c)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer conn.Close()
	// TLS 1.3 reports a refused client certificate after the handshake: the server's
	// alert arrives with the first read.
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	req := "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
	if conn.ConnectionState().NegotiatedProtocol == "h2" {
		req = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" // the client preface; the server answers SETTINGS
	}
	if _, err := conn.Write([]byte(req)); err != nil {
		return tls.ConnectionState{}, err
	}
	if _, err := conn.Read(make([]byte, 1)); err != nil {
		return tls.ConnectionState{}, err
	}
	return conn.ConnectionState(), nil
}

// ipLoopback is the IP SAN of the servers of these tests.
func (p *pki) ipLoopback() []net.IP { return []net.IP{net.IPv4(127, 0, 0, 1)} }

// clientPair issues a client certificate with that CN and loads it.
func (p *pki) clientPair(name, cn string, uris ...string) tls.Certificate {
	p.t.Helper()
	cert, key := p.client(name, cn, uris...)
	return keyPair(p.t, cert, key)
}

// presenting is a client config that sends cert whatever CAs the server names (Go's
// client would otherwise send no certificate the server's CA list does not cover, and a
// test of the server's verification would prove nothing).
func presenting(roots *x509.CertPool, cert tls.Certificate) *tls.Config {
	return &tls.Config{RootCAs: roots, GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }}
}
