package tlsx_test

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/checkout-backend/checkout/internal/platform/tlsx"
)

// whoami answers the protocol and the verified client certificate's CN.
var whoami = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	cn := "-"
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		cn = r.TLS.VerifiedChains[0][0].Subject.CommonName
	}
	fmt.Fprintf(w, "%s %s", r.Proto, cn)
})

func get(t *testing.T, addr string, c *tls.Config, h2 bool) (string, error) {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: c, ForceAttemptHTTP2: h2, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("https://" + addr + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func TestServer_RequiredClientCertificate_HandshakeRefusedWithoutOne(t *testing.T) {
	t.Parallel()
	p, stranger := newPKI(t, "ca"), newPKI(t, "another ca")
	cert, key := p.server("server")
	cfg, err := tlsx.Server(tlsx.ServerOptions{CertFile: cert, KeyFile: key, ClientCAFile: p.CA, ClientAuth: tlsx.RequireClientCert, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, cfg, whoami)
	alice := p.clientPair("alice", "alice")
	mallory := stranger.clientPair("mallory", "alice")

	body, err := get(t, addr, &tls.Config{RootCAs: p.roots(), Certificates: []tls.Certificate{alice}}, true)
	if err != nil || body != "HTTP/2.0 alice" {
		t.Fatalf("with a client certificate of the CA: %q, %v (want HTTP/2.0 alice)", body, err)
	}
	for name, c := range map[string]*tls.Config{
		"no client certificate":            {RootCAs: p.roots()},
		"a certificate of another CA":      presenting(p.roots(), mallory),
		"no client certificate, TLS 1.2":   {RootCAs: p.roots(), MaxVersion: tls.VersionTLS12},
		"another CA's certificate, TLS1.2": tls12(presenting(p.roots(), mallory)),
	} {
		if _, err := handshake(addr, c); err == nil {
			t.Errorf("%s: handshake accepted, want refused", name)
		}
		if body, err := get(t, addr, c, true); err == nil {
			t.Errorf("%s: request answered %q, want the connection refused", name, body)
		}
	}
	// The client verifies the server too: a client that does not trust the CA refuses it.
	if _, err := handshake(addr, &tls.Config{RootCAs: stranger.roots(), Certificates: []tls.Certificate{alice}}); err == nil {
		t.Error("a client trusting another CA accepted the server")
	}
}

func TestServer_OptionalClientCertificate_AnonymousInBadCertificateOut(t *testing.T) {
	t.Parallel()
	p, stranger := newPKI(t, "ca"), newPKI(t, "another ca")
	cert, key := p.server("server")
	cfg, err := tlsx.Server(tlsx.ServerOptions{CertFile: cert, KeyFile: key, ClientCAFile: p.CA, ClientAuth: tlsx.OptionalClientCert, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, cfg, whoami)
	if body, err := get(t, addr, &tls.Config{RootCAs: p.roots()}, true); err != nil || body != "HTTP/2.0 -" {
		t.Fatalf("without a certificate: %q, %v (want HTTP/2.0 -)", body, err)
	}
	bob := p.clientPair("bob", "bob")
	if body, err := get(t, addr, &tls.Config{RootCAs: p.roots(), Certificates: []tls.Certificate{bob}}, true); err != nil || body != "HTTP/2.0 bob" {
		t.Fatalf("with a certificate: %q, %v (want HTTP/2.0 bob)", body, err)
	}
	mallory := stranger.clientPair("mallory", "bob")
	if body, err := get(t, addr, presenting(p.roots(), mallory), true); err == nil {
		t.Fatalf("a certificate of another CA was let in: %q", body)
	}
}

func TestServer_NegotiatesHTTP2AndHTTP1(t *testing.T) {
	t.Parallel()
	p := newPKI(t, "ca")
	cert, key := p.server("server")
	cfg, err := tlsx.Server(tlsx.ServerOptions{CertFile: cert, KeyFile: key, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, cfg, whoami)
	st, err := handshake(addr, &tls.Config{RootCAs: p.roots(), NextProtos: []string{"h2", "http/1.1"}})
	if err != nil || st.NegotiatedProtocol != "h2" {
		t.Fatalf("ALPN h2: negotiated %q, %v", st.NegotiatedProtocol, err)
	}
	if body, err := get(t, addr, &tls.Config{RootCAs: p.roots()}, true); err != nil || !strings.HasPrefix(body, "HTTP/2.0") {
		t.Fatalf("an HTTP/2 client: %q, %v", body, err)
	}
	// WebSocket clients ask for http/1.1 only.
	if body, err := get(t, addr, &tls.Config{RootCAs: p.roots(), NextProtos: []string{"http/1.1"}}, false); err != nil || !strings.HasPrefix(body, "HTTP/1.1") {
		t.Fatalf("an HTTP/1.1 client: %q, %v", body, err)
	}
}

// serialOf is the serial number of the certificate the server presents to a new
// handshake.
func serialOf(t *testing.T, addr string, p *pki) string {
	t.Helper()
	st, err := handshake(addr, &tls.Config{RootCAs: p.roots()})
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	return st.PeerCertificates[0].SerialNumber.String()
}

// logBuffer is a logger whose lines a test reads.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestServer_RotatedCertificate_ServedOnTheNextHandshake(t *testing.T) {
	t.Parallel()
	p := newPKI(t, "ca")
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	issue := func() string {
		i, err := p.ca.Issue(tlsx.Leaf{CommonName: "localhost", IPs: p.ipLoopback(), Server: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := i.WriteFiles(cert, key); err != nil {
			t.Fatal(err)
		}
		return i.Cert.SerialNumber.String()
	}
	first := issue()
	var logs logBuffer
	cfg, err := tlsx.Server(tlsx.ServerOptions{CertFile: cert, KeyFile: key, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, cfg, whoami)
	if got := serialOf(t, addr, p); got != first {
		t.Fatalf("serving serial %s, want %s", got, first)
	}

	// Rewritten in place (cp over the old files).
	second := issue()
	if got := serialOf(t, addr, p); got != second {
		t.Fatalf("after the files were rewritten: serial %s, want the new %s", got, second)
	}

	// Replaced by a rename, as an atomic deploy or a Kubernetes secret volume does.
	i, err := p.ca.Issue(tlsx.Leaf{CommonName: "localhost", IPs: p.ipLoopback(), Server: true})
	if err != nil {
		t.Fatal(err)
	}
	tmpCert, tmpKey := filepath.Join(dir, "new.crt"), filepath.Join(dir, "new.key")
	if err := i.WriteFiles(tmpCert, tmpKey); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmpKey, key); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmpCert, cert); err != nil {
		t.Fatal(err)
	}
	third := i.Cert.SerialNumber.String()
	if got := serialOf(t, addr, p); got != third {
		t.Fatalf("after a rename: serial %s, want %s", got, third)
	}

	// Half a rotation (a new certificate, the old key): the previous pair stays in use.
	next, err := p.ca.Issue(tlsx.Leaf{CommonName: "localhost", IPs: p.ipLoopback(), Server: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cert, next.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if got := serialOf(t, addr, p); got != third {
		t.Fatalf("with a certificate that does not match its key: serial %s, want the previous %s", got, third)
	}
	if !strings.Contains(logs.String(), "reload failed") {
		t.Errorf("the failed reload was not logged: %s", logs.String())
	}
	// The key arrives: the new pair is served.
	if err := os.WriteFile(key, next.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := serialOf(t, addr, p); got != next.Cert.SerialNumber.String() {
		t.Fatalf("once the key matched: serial %s, want %s", got, next.Cert.SerialNumber)
	}
}

func TestServer_RotatedClientCA_TakesEffectOnTheNextHandshake(t *testing.T) {
	t.Parallel()
	oldCA, newCA := newPKI(t, "old client ca"), newPKI(t, "new client ca")
	cert, key := oldCA.server("server")
	caFile := filepath.Join(t.TempDir(), "client-ca.crt")
	if err := os.WriteFile(caFile, oldCA.ca.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := tlsx.Server(tlsx.ServerOptions{CertFile: cert, KeyFile: key, ClientCAFile: caFile, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, cfg, whoami)
	oldClient := presenting(oldCA.roots(), oldCA.clientPair("c1", "c1"))
	newClient := presenting(oldCA.roots(), newCA.clientPair("c2", "c2"))
	if _, err := handshake(addr, oldClient); err != nil {
		t.Fatalf("old CA's client before the rotation: %v", err)
	}
	if _, err := handshake(addr, newClient); err == nil {
		t.Fatal("new CA's client accepted before the rotation")
	}
	if err := os.WriteFile(caFile, newCA.ca.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := handshake(addr, newClient); err != nil {
		t.Fatalf("new CA's client after the rotation: %v", err)
	}
	if _, err := handshake(addr, oldClient); err == nil {
		t.Fatal("old CA's client still accepted after the rotation")
	}
}

func TestServer_BadFilesRefusedAtStart(t *testing.T) {
	t.Parallel()
	p := newPKI(t, "ca")
	cert, key := p.server("server")
	_, otherKey := p.server("other")
	empty := filepath.Join(t.TempDir(), "empty.pem")
	os.WriteFile(empty, nil, 0o644)
	for name, opt := range map[string]tlsx.ServerOptions{
		"no key":                {CertFile: cert},
		"missing certificate":   {CertFile: cert + ".missing", KeyFile: key},
		"key of another pair":   {CertFile: cert, KeyFile: otherKey},
		"client CA without PEM": {CertFile: cert, KeyFile: key, ClientCAFile: empty},
		"unknown client policy": {CertFile: cert, KeyFile: key, ClientCAFile: p.CA, ClientAuth: "sometimes"},
	} {
		opt.Logger = quiet()
		if _, err := tlsx.Server(opt); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// BenchmarkServer_Handshake measures a full TLS handshake with a client certificate,
// including the stat of the three files that notices a rotation.
func BenchmarkServer_Handshake(b *testing.B) {
	p := newPKI(b, "ca")
	cert, key := p.server("server")
	cfg, err := tlsx.Server(tlsx.ServerOptions{CertFile: cert, KeyFile: key, ClientCAFile: p.CA, Logger: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	addr := serve(b, cfg, whoami)
	client := &tls.Config{RootCAs: p.roots(), Certificates: []tls.Certificate{p.clientPair("c", "c")}}
	b.ResetTimer()
	for b.Loop() {
		if _, err := handshake(addr, client); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkServer_ConfigForClient measures what each handshake adds to notice a
// rotation: three stats and a mutex.
func BenchmarkServer_ConfigForClient(b *testing.B) {
	p := newPKI(b, "ca")
	cert, key := p.server("server")
	cfg, err := tlsx.Server(tlsx.ServerOptions{CertFile: cert, KeyFile: key, ClientCAFile: p.CA, Logger: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := cfg.GetConfigForClient(nil); err != nil {
			b.Fatal(err)
		}
	}
}

func tls12(c *tls.Config) *tls.Config { c.MaxVersion = tls.VersionTLS12; return c }
