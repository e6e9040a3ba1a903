package main

import (
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/checkout-backend/checkout/internal/platform/tlsx"
)

// DevPartnerID is the URI SAN of the development partner certificate.
const DevPartnerID = "spiffe://checkout.dev/partner/dev-partner"

// devCertFiles are the files checkout certs dev writes, by role.
type devCertFiles struct {
	CA, CAKey, Server, ServerKey, Partner, PartnerKey, Client, ClientKey string
}

func devFiles(dir string) devCertFiles {
	p := func(name string) string { return filepath.Join(dir, name) }
	return devCertFiles{CA: p("ca.crt"), CAKey: p("ca.key"), Server: p("server.crt"), ServerKey: p("server.key"),
		Partner: p("partner.crt"), PartnerKey: p("partner.key"), Client: p("client.crt"), ClientKey: p("client.key")}
}

// runCerts is `checkout certs dev [--dir DIR] [--client-cn NAME] [--force]`: a local CA, a
// server certificate for localhost, 127.0.0.1 and ::1, a partner client certificate and
// a client certificate for the service's own connections to PostgreSQL, RabbitMQ and
// Redis. Files that exist and are still good are kept (--force makes all anew). The
// environment lines go to out, ready for eval; what was made or kept to log.
func runCerts(args []string, out, log io.Writer) error {
	if len(args) == 0 || args[0] != "dev" {
		return errors.New("certs: usage: checkout certs dev [--dir DIR] [--client-cn NAME] [--force]")
	}
	fs := flag.NewFlagSet("certs dev", flag.ContinueOnError)
	fs.SetOutput(log)
	dir := fs.String("dir", ".dev/tls", "directory of the CA, keys and certificates")
	clientCN := fs.String("client-cn", "checkout", "CN of the client certificate for PostgreSQL, RabbitMQ and Redis (PostgreSQL's clientcert=verify-full compares it with the user name)")
	force := fs.Bool("force", false, "make a new CA and certificates even if good ones exist")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	f := devFiles(abs)

	ca, err := tlsx.LoadCA(f.CA, f.CAKey)
	if *force || err != nil || time.Until(ca.Cert.NotAfter) < 30*24*time.Hour {
		if ca, err = tlsx.NewCA("checkout development CA", 2*365*24*time.Hour); err != nil {
			return fmt.Errorf("certs: %w", err)
		}
		keyPEM, err := ca.KeyPEM()
		if err != nil {
			return fmt.Errorf("certs: %w", err)
		}
		if err := os.WriteFile(f.CAKey, keyPEM, 0o600); err != nil {
			return fmt.Errorf("certs: %w", err)
		}
		if err := os.WriteFile(f.CA, ca.PEM, 0o644); err != nil {
			return fmt.Errorf("certs: %w", err)
		}
		*force = true // every certificate of the old CA goes with it
		fmt.Fprintf(log, "certs: made a CA: %s (trust it in your browser to open the playground without a warning)\n", f.CA)
	}
	leaves := []struct {
		name, cert, key string
		leaf            tlsx.Leaf
	}{
		{"server (localhost, 127.0.0.1, ::1)", f.Server, f.ServerKey, tlsx.Leaf{CommonName: "localhost", DNSNames: []string{"localhost"},
			IPs: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, Server: true, Validity: 365 * 24 * time.Hour}},
		{"partner " + DevPartnerID, f.Partner, f.PartnerKey, tlsx.Leaf{CommonName: "dev-partner", URIs: []string{DevPartnerID},
			Client: true, Validity: 365 * 24 * time.Hour}},
		{"client CN=" + *clientCN + " (PostgreSQL, RabbitMQ, Redis)", f.Client, f.ClientKey, tlsx.Leaf{CommonName: *clientCN,
			Client: true, Validity: 365 * 24 * time.Hour}},
	}
	for _, l := range leaves {
		if !*force && goodLeaf(ca, l.cert, l.key, l.leaf.CommonName) {
			fmt.Fprintf(log, "certs: kept %s: %s\n", l.name, l.cert)
			continue
		}
		issued, err := ca.Issue(l.leaf)
		if err != nil {
			return fmt.Errorf("certs: %s: %w", l.name, err)
		}
		if err := issued.WriteFiles(l.cert, l.key); err != nil {
			return fmt.Errorf("certs: %w", err)
		}
		fmt.Fprintf(log, "certs: made %s: %s\n", l.name, l.cert)
	}
	printDevEnv(out, f, *clientCN)
	return nil
}

// goodLeaf reports whether cert and key exist, match, chain to ca, carry cn and stay
// valid for a week more.
func goodLeaf(ca *tlsx.CA, certFile, keyFile, cn string) bool {
	pair, err := tlsx.Client(tlsx.Files{Cert: certFile, Key: keyFile}, "", nil)
	if err != nil || pair.GetClientCertificate == nil {
		return false
	}
	c, err := pair.GetClientCertificate(nil)
	if err != nil || c.Leaf == nil || c.Leaf.Subject.CommonName != cn || time.Until(c.Leaf.NotAfter) < 7*24*time.Hour {
		return false
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	_, err = c.Leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err == nil
}

// printDevEnv writes the settings that use the files: the service's HTTPS listener and
// partner mapping as export lines, the dependencies' as comments (their servers must be
// set up with server.crt and ca.crt first).
func printDevEnv(out io.Writer, f devCertFiles, clientCN string) {
	q := func(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
	fmt.Fprintf(out, `# checkout certs dev: eval "$(checkout certs dev)" serves HTTPS with these files
export TLS_CERT_FILE=%s
export TLS_KEY_FILE=%s
export TLS_CLIENT_CA_FILE=%s
export TLS_CLIENT_AUTH=optional
export TLS_PARTNER_CLIENTS=%s
# A partner's request, authenticated by its certificate:
#   curl --cacert %s --cert %s --key %s https://localhost:8080/graphql -H 'content-type: application/json' -d '{"query":"{ __typename }"}'
# PostgreSQL, RabbitMQ and Redis over TLS (servers with server.crt/server.key, client CA ca.crt; the client certificate's CN is %s):
# export DATABASE_URL=%s
# export AMQP_URL=amqps://checkout:PASSWORD@localhost:5671/ AMQP_TLS_CA_FILE=%s AMQP_TLS_CERT_FILE=%s AMQP_TLS_KEY_FILE=%s
# export REDIS_URL=rediss://localhost:6380/0 REDIS_TLS_CA_FILE=%s REDIS_TLS_CERT_FILE=%s REDIS_TLS_KEY_FILE=%s
`, q(f.Server), q(f.ServerKey), q(f.CA), q(DevPartnerID), f.CA, f.Partner, f.PartnerKey, clientCN,
		q("postgres://"+clientCN+"@localhost:5432/checkout?sslmode=verify-full&sslrootcert="+f.CA+"&sslcert="+f.Client+"&sslkey="+f.ClientKey),
		q(f.CA), q(f.Client), q(f.ClientKey), q(f.CA), q(f.Client), q(f.ClientKey))
}
