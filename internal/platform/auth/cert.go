package auth

import (
	"context"
	"crypto/x509"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/checkout-backend/checkout/internal/checkout"
)

// PartnerCerts maps client certificates, verified by the TLS listener against
// TLS_CLIENT_CA_FILE, to partner identities (TLS_PARTNER_CLIENTS). An entry is one of:
//
//	spiffe://example.org/partner/acme   a URI SAN (any scheme://), matched exactly
//	dns:api.acme.example                a DNS SAN, matched exactly, case-insensitively
//	cn:acme                             the subject common name, matched exactly
//
// A certificate that matches an entry authenticates the partner "partner:<entry>": the
// partner role and nothing else. No token's subject starts with "partner:"
// (Verifier refuses it), so that identity is the certificate's alone. A certificate never makes an admin, and a certificate
// the list does not name (a customer's, a proxy's) authenticates nobody: its holder
// still needs a JWT.
type PartnerCerts struct {
	uris, dns, cns map[string]string // identity -> entry
}

// NewPartnerCerts parses TLS_PARTNER_CLIENTS entries; an empty list maps nobody.
func NewPartnerCerts(entries []string) (*PartnerCerts, error) {
	p := &PartnerCerts{uris: map[string]string{}, dns: map[string]string{}, cns: map[string]string{}}
	for _, e := range entries {
		e = strings.TrimSpace(e)
		switch {
		case e == "":
		case strings.HasPrefix(e, "dns:") && len(e) > len("dns:"):
			p.dns[strings.ToLower(e[len("dns:"):])] = e
		case strings.HasPrefix(e, "cn:") && len(e) > len("cn:"):
			p.cns[e[len("cn:"):]] = e
		case strings.Contains(e, "://") && !strings.HasPrefix(e, "://"):
			p.uris[e] = e
		default:
			return nil, fmt.Errorf("TLS_PARTNER_CLIENTS: %q is neither a URI SAN (spiffe://...), dns:NAME nor cn:NAME", e)
		}
	}
	return p, nil
}

// Len is the number of partner identities listed.
func (p *PartnerCerts) Len() int { return len(p.uris) + len(p.dns) + len(p.cns) }

// Actor returns the partner a verified certificate chain names (the leaf of the first
// chain) and when the certificate expires; ok is false when it names none. Only
// verified chains count: a certificate the listener did not verify never reaches here.
func (p *PartnerCerts) Actor(verified [][]*x509.Certificate) (a checkout.Actor, until time.Time, ok bool) {
	if p == nil || len(verified) == 0 || len(verified[0]) == 0 {
		return checkout.Actor{}, time.Time{}, false
	}
	leaf := verified[0][0]
	entry := ""
	for _, u := range leaf.URIs {
		if e, found := p.uris[u.String()]; found && entry == "" {
			entry = e
		}
	}
	for _, d := range leaf.DNSNames {
		if e, found := p.dns[strings.ToLower(d)]; found && entry == "" {
			entry = e
		}
	}
	if e, found := p.cns[leaf.Subject.CommonName]; found && entry == "" {
		entry = e
	}
	if entry == "" {
		return checkout.Actor{}, time.Time{}, false
	}
	return checkout.Actor{CustomerID: PartnerPrefix + entry, Partner: true}, leaf.NotAfter, true
}

type certKey struct{}

type certState struct {
	actor checkout.Actor
	until time.Time
}

// Middleware authenticates a request whose TLS connection presented a listed partner
// certificate: the partner becomes the request's actor. It runs before
// Verifier.Middleware, so a request that also carries an Authorization header is the
// token's (a bad token then answers UNAUTHENTICATED as usual).
func (p *PartnerCerts) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil {
			if a, until, ok := p.Actor(r.TLS.VerifiedChains); ok {
				ctx := WithActor(r.Context(), a)
				r = r.WithContext(context.WithValue(ctx, certKey{}, certState{actor: a, until: until}))
			}
		}
		next.ServeHTTP(w, r)
	})
}

// CertificateActor returns the partner the request's client certificate authenticated
// (PartnerCerts.Middleware) and when that certificate expires: a WebSocket opened with
// it and no token in connection_init is that partner's until then.
func CertificateActor(ctx context.Context) (checkout.Actor, time.Time, bool) {
	s, ok := ctx.Value(certKey{}).(certState)
	return s.actor, s.until, ok
}
