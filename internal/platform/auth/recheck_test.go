package auth_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/checkout-backend/checkout/internal/platform/auth"
	"github.com/checkout-backend/checkout/internal/platform/tlsx"
)

// rotatingServer is partnerServer whose client CA file can be replaced and whose
// partners' clock can be moved: it returns the URL, the CA file and the clock's offset.
func rotatingServer(t *testing.T, ca *tlsx.CA, listed ...string) (url, caFile string, skew *atomic.Int64) {
	t.Helper()
	opt, err := ca.LocalServer(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	caFile = opt.ClientCAFile
	opt.ClientAuth, opt.Logger = tlsx.OptionalClientCert, slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg, cas, err := tlsx.ServerWithClientCAs(opt)
	if err != nil {
		t.Fatal(err)
	}
	skew = new(atomic.Int64)
	partners, err := auth.NewPartnerCerts(listed)
	if err != nil {
		t.Fatal(err)
	}
	partners.WithRecheck(auth.Recheck{ClientCAs: cas, Now: func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }})
	h := partners.Middleware(auth.NewVerifier(secret).Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, err := auth.FromContext(r.Context())
		_, _, cert := auth.CertificateActor(r.Context())
		out := whoAmI{ID: a.CustomerID, Partner: a.Partner, Cert: cert}
		if err != nil {
			out.Err = err.Error()
		}
		json.NewEncoder(w).Encode(out)
	})))
	ts := httptest.NewUnstartedServer(h)
	ts.TLS = cfg
	ts.EnableHTTP2 = true
	ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	ts.StartTLS()
	t.Cleanup(ts.Close)
	return ts.URL, caFile, skew
}

// keptAlive is a client presenting cert over one kept-alive connection.
type keptAlive struct {
	t  *testing.T
	c  *http.Client
	tr *http.Transport
}

func newKeptAlive(t *testing.T, ca *tlsx.CA, cert *tlsx.Issued, h2 bool) *keptAlive {
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	pair, err := tls.X509KeyPair(cert.CertPEM, cert.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}}, ForceAttemptHTTP2: h2}
	t.Cleanup(tr.CloseIdleConnections)
	return &keptAlive{t: t, c: &http.Client{Transport: tr, Timeout: 10 * time.Second}, tr: tr}
}

// get asks who the server takes the caller for, and whether the connection was reused
// and is closed after.
func (k *keptAlive) get(url string) (who whoAmI, reused, closed bool) {
	k.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}))
	resp, err := k.c.Do(req)
	if err != nil {
		k.t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&who); err != nil {
		k.t.Fatal(err)
	}
	return who, reused, resp.Close
}

// TestL12_KeptAliveConnection_CertificateCheckedAgainAtEachRequest: a partner's
// certificate is checked again at each request of a kept-alive connection: once it has
// expired, or once the client CA file is replaced by one that does not vouch for it, the
// connection authenticates nobody (and is closed after the answer).
func TestL12_KeptAliveConnection_CertificateCheckedAgainAtEachRequest(t *testing.T) {
	t.Parallel()
	ca, err := tlsx.NewCA("partners ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other, err := tlsx.NewCA("the next partners ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	url, caFile, skew := rotatingServer(t, ca, "cn:acme")
	acme, err := ca.Issue(tlsx.Leaf{CommonName: "acme", Client: true, Validity: 2 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	partner := whoAmI{ID: "partner:cn:acme", Partner: true, Cert: true}
	refused := whoAmI{Err: auth.ErrCertificateNotValid.Error()}

	t.Run("the certificate expires during the connection (HTTP/1.1)", func(t *testing.T) {
		k := newKeptAlive(t, ca, acme, false)
		if who, _, _ := k.get(url); who != partner {
			t.Fatalf("first request: %+v", who)
		}
		skew.Store(int64(time.Until(acme.Cert.NotAfter) + time.Minute)) // a minute after notAfter
		defer skew.Store(0)
		who, reused, closed := k.get(url)
		if !reused {
			t.Fatal("the second request did not reuse the connection")
		}
		if who != refused {
			t.Fatalf("after the certificate's notAfter, on the same connection: %+v, want %+v", who, refused)
		}
		if !closed {
			t.Error("the connection is kept open after its certificate expired")
		}
	})

	t.Run("the CA is rotated away (HTTP/2)", func(t *testing.T) {
		k := newKeptAlive(t, ca, acme, true)
		if who, _, _ := k.get(url); who != partner {
			t.Fatalf("first request: %+v", who)
		}
		if who, reused, _ := k.get(url); who != partner || !reused {
			t.Fatalf("second request: %+v reused %v", who, reused)
		}
		// The operator drops the old CA, as docs/security.md "Rotation" says: a new file
		// renamed over the old one.
		next := caFile + ".next"
		if err := os.WriteFile(next, other.PEM, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(next, caFile); err != nil {
			t.Fatal(err)
		}
		who, reused, _ := k.get(url)
		if !reused {
			t.Fatal("the request after the rotation did not reuse the connection")
		}
		if who != refused {
			t.Fatalf("after the CA that issued it was dropped, on the same connection: %+v, want %+v", who, refused)
		}
	})
}
