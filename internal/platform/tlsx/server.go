package tlsx

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
)

// ClientAuth is the listener's policy for client certificates (TLS_CLIENT_AUTH).
type ClientAuth string

const (
	// RequireClientCert refuses the handshake of a client without a certificate that
	// chains to the client CA.
	RequireClientCert ClientAuth = "require"
	// OptionalClientCert asks for a certificate and verifies the one given (a bad one
	// fails the handshake), but lets clients without one in (they authenticate with a
	// JWT, as browsers do).
	OptionalClientCert ClientAuth = "optional"
)

// ParseClientAuth reads TLS_CLIENT_AUTH: "" (require), require or optional.
func ParseClientAuth(s string) (ClientAuth, error) {
	switch ClientAuth(s) {
	case "", RequireClientCert:
		return RequireClientCert, nil
	case OptionalClientCert:
		return OptionalClientCert, nil
	}
	return "", fmt.Errorf("TLS_CLIENT_AUTH must be require or optional, not %q", s)
}

// ServerOptions name the files of an HTTPS listener.
type ServerOptions struct {
	// CertFile and KeyFile are the server's certificate chain and key.
	CertFile, KeyFile string
	// ClientCAFile, when set, holds the CA certificates client certificates must chain
	// to; ClientAuth says whether one is required.
	ClientCAFile string
	ClientAuth   ClientAuth
	// Logger is told each (re)load and each failed reload (default slog.Default()).
	Logger *slog.Logger
}

// Server returns the tls.Config of an HTTPS listener (http.Server.TLSConfig, then
// ListenAndServeTLS("", "")). Every handshake first stats the certificate, key and
// client CA files; when one changed, they are loaded again and the handshake uses them,
// so a rotated certificate is served without a restart. A reload that fails (a key that
// does not match yet) is logged and the previous files stay in use. The files must be
// valid at start: that error is returned. TLS 1.2 at least; ALPN offers h2 and
// http/1.1 (WebSocket upgrades use the latter).
func Server(opt ServerOptions) (*tls.Config, error) {
	c, _, err := ServerWithClientCAs(opt)
	return c, err
}

// ClientCAs returns a listener's current client CA pool (nil without TLS_CLIENT_CA_FILE),
// loading the file again first when it changed, as a handshake does, and its generation,
// which changes with each load: a connection verified against an older generation is
// verified again (auth.PartnerCerts) before it is trusted further.
type ClientCAs func() (*x509.CertPool, uint64)

// ServerWithClientCAs is Server that also returns the listener's ClientCAs.
func ServerWithClientCAs(opt ServerOptions) (*tls.Config, ClientCAs, error) {
	if opt.CertFile == "" || opt.KeyFile == "" {
		return nil, nil, fmt.Errorf("tls: the server needs TLS_CERT_FILE and TLS_KEY_FILE")
	}
	auth, err := ParseClientAuth(string(opt.ClientAuth))
	if err != nil {
		return nil, nil, fmt.Errorf("tls: %w", err)
	}
	logger := opt.Logger
	if logger == nil {
		logger = slog.Default()
	}
	paths := []string{opt.CertFile, opt.KeyFile}
	if opt.ClientCAFile != "" {
		paths = append(paths, opt.ClientCAFile)
	}
	w := &watched[*tls.Config]{
		paths: paths,
		load: func() (*tls.Config, error) {
			cert, err := loadKeyPair(opt.CertFile, opt.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("tls: server certificate %s: %w", opt.CertFile, err)
			}
			c := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}, Certificates: []tls.Certificate{*cert}}
			if opt.ClientCAFile != "" {
				if c.ClientCAs, err = LoadPool(opt.ClientCAFile); err != nil {
					return nil, fmt.Errorf("tls: client CA: %w", err)
				}
				c.ClientAuth = tls.RequireAndVerifyClientCert
				if auth == OptionalClientCert {
					c.ClientAuth = tls.VerifyClientCertIfGiven
				}
			}
			return c, nil
		},
		onLoad: func(c *tls.Config) {
			leaf := c.Certificates[0].Leaf
			logger.Info("tls: server certificate loaded", "subject", leaf.Subject.String(), "serial", leaf.SerialNumber.Text(16),
				"notAfter", leaf.NotAfter, "clientCertificates", clientAuthName(c))
		},
		onFail: func(err error) {
			logger.Warn("tls: reload failed; still serving the previous certificate", "error", err)
		},
	}
	if err := w.init(); err != nil {
		return nil, nil, err
	}
	cas := func() (*x509.CertPool, uint64) {
		c, gen := w.current()
		return c.ClientCAs, gen
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return w.get(), nil
		},
	}, cas, nil
}

func clientAuthName(c *tls.Config) string {
	switch c.ClientAuth {
	case tls.RequireAndVerifyClientCert:
		return string(RequireClientCert)
	case tls.VerifyClientCertIfGiven:
		return string(OptionalClientCert)
	}
	return "none"
}
