package auth_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/checkout-backend/checkout/internal/platform/auth"
	"github.com/checkout-backend/checkout/internal/platform/tlsx"
)

const secret = "cert-test-secret-0123456789abcdef0123"

// whoAmI is what the test server answers: the request's actor.
type whoAmI struct {
	ID      string `json:"id"`
	Admin   bool   `json:"admin"`
	Partner bool   `json:"partner"`
	Err     string `json:"err"`
	Cert    bool   `json:"cert"`
}

// partnerServer runs an HTTPS server that asks for client certificates of ca (verified
// when given) and answers the actor that PartnerCerts then Verifier made of a request,
// as serve chains them.
func partnerServer(t *testing.T, ca *tlsx.CA, listed ...string) string {
	t.Helper()
	opt, err := ca.LocalServer(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	opt.ClientAuth, opt.Logger = tlsx.OptionalClientCert, slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg, err := tlsx.Server(opt)
	if err != nil {
		t.Fatal(err)
	}
	partners, err := auth.NewPartnerCerts(listed)
	if err != nil {
		t.Fatal(err)
	}
	h := partners.Middleware(auth.NewVerifier(secret).Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, err := auth.FromContext(r.Context())
		_, _, cert := auth.CertificateActor(r.Context())
		out := whoAmI{ID: a.CustomerID, Admin: a.Admin, Partner: a.Partner, Cert: cert}
		if err != nil {
			out.Err = err.Error()
		}
		json.NewEncoder(w).Encode(out)
	})))
	ts := httptest.NewUnstartedServer(h)
	ts.TLS = cfg
	ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	ts.StartTLS()
	t.Cleanup(ts.Close)
	return ts.URL
}

// ask sends GET url presenting cert (nil: none) and token ("": none).
func ask(t *testing.T, url string, ca *tlsx.CA, cert *tlsx.Issued, token string) whoAmI {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	c := &tls.Config{RootCAs: roots}
	if cert != nil {
		pair, err := tls.X509KeyPair(cert.CertPEM, cert.KeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		c.Certificates = []tls.Certificate{pair}
	}
	tr := &http.Transport{TLSClientConfig: c, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out whoAmI
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestPartnerCerts_ListedIdentityBecomesPartner_NothingElseDoes(t *testing.T) {
	t.Parallel()
	ca, err := tlsx.NewCA("partners ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	url := partnerServer(t, ca, "spiffe://partners.example/acme", "dns:API.Globex.example", "cn:initech")
	issue := func(l tlsx.Leaf) *tlsx.Issued {
		l.Client = true
		i, err := ca.Issue(l)
		if err != nil {
			t.Fatal(err)
		}
		return i
	}
	customerToken, err := auth.Sign(secret, "customer-7", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	acme := issue(tlsx.Leaf{CommonName: "admin", URIs: []string{"spiffe://partners.example/acme"}})
	for _, tc := range []struct {
		name  string
		cert  *tlsx.Issued
		token string
		want  whoAmI
	}{
		{"URI SAN listed", acme, "", whoAmI{ID: "partner:spiffe://partners.example/acme", Partner: true, Cert: true}},
		{"DNS SAN listed (any case)", issue(tlsx.Leaf{CommonName: "x", DNSNames: []string{"api.globex.EXAMPLE"}}), "",
			whoAmI{ID: "partner:dns:API.Globex.example", Partner: true, Cert: true}},
		{"CN listed", issue(tlsx.Leaf{CommonName: "initech"}), "", whoAmI{ID: "partner:cn:initech", Partner: true, Cert: true}},
		{"no certificate", nil, "", whoAmI{}},
		{"a customer's certificate of the same CA", issue(tlsx.Leaf{CommonName: "customer-7", URIs: []string{"spiffe://partners.example/customer-7"}}), "", whoAmI{}},
		{"a CN named like an admin", issue(tlsx.Leaf{CommonName: "admin"}), "", whoAmI{}},
		{"a longer URI than the listed one", issue(tlsx.Leaf{CommonName: "x", URIs: []string{"spiffe://partners.example/acme/evil"}}), "", whoAmI{}},
		{"a CN equal to a listed DNS name", issue(tlsx.Leaf{CommonName: "api.globex.example"}), "", whoAmI{}},
		{"a DNS SAN equal to a listed CN", issue(tlsx.Leaf{CommonName: "x", DNSNames: []string{"initech"}}), "", whoAmI{}},
		{"a partner's certificate with a customer token: the token decides", acme, customerToken, whoAmI{ID: "customer-7", Cert: true}},
		{"a partner's certificate with a bad token: unauthenticated", acme, "not-a-jwt", whoAmI{Err: auth.ErrInvalidToken.Error(), Cert: true}},
	} {
		got := ask(t, url, ca, tc.cert, tc.token)
		if got != tc.want {
			t.Errorf("%s: actor %+v, want %+v", tc.name, got, tc.want)
		}
		if got.Admin {
			t.Errorf("%s: a certificate made an admin", tc.name)
		}
	}
}

func TestPartnerCerts_RefusesEntriesThatNameNothingPrecisely(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"acme", "dns:", "cn:", "://x", "partner.example"} {
		if _, err := auth.NewPartnerCerts([]string{bad}); err == nil {
			t.Errorf("TLS_PARTNER_CLIENTS=%q accepted", bad)
		}
	}
	p, err := auth.NewPartnerCerts([]string{" spiffe://a/b ", "", "dns:x.example", "cn:y"})
	if err != nil || p.Len() != 3 {
		t.Fatalf("three entries: %v, %d", err, p.Len())
	}
}

// Without a verified chain (plain HTTP, or TLS without client certificates) nobody is
// authenticated by certificate, whatever was listed.
func TestPartnerCerts_NoVerifiedChainNoPartner(t *testing.T) {
	t.Parallel()
	p, err := auth.NewPartnerCerts([]string{"cn:acme"})
	if err != nil {
		t.Fatal(err)
	}
	h := p.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, _ := auth.FromContext(r.Context())
		fmt.Fprint(w, a.CustomerID)
	}))
	for name, st := range map[string]*tls.ConnectionState{"plain": nil, "TLS without a client certificate": {}} {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.TLS = st
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Body.String() != "" {
			t.Errorf("%s: actor %q", name, rec.Body.String())
		}
	}
}
