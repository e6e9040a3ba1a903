package auth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
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
	recheck        Recheck

	mu       sync.Mutex
	verdicts map[*x509.Certificate]verdict // leaf -> its check against the CA generation cacheGen
	cacheGen uint64
	watches  map[*certWatch]struct{}
	ticking  bool
}

// Recheck is how a partner's certificate is checked again after its handshake, on
// connections that outlive it: at each HTTP request of a kept-alive connection, and every
// Every on a WebSocket. A certificate past its notAfter (or a CA's of its chain), or one
// the client CA file, reloaded since, no longer vouches for, authenticates nobody any
// more: its request answers UNAUTHENTICATED (the connection closed after), its socket
// closes with 4403.
type Recheck struct {
	// ClientCAs is the listener's current client CA pool and its generation
	// (tlsx.ServerWithClientCAs); nil checks the expiry alone.
	ClientCAs func() (*x509.CertPool, uint64)
	// Every is how often the certificates of open sockets are checked (default 10 s).
	Every time.Duration
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// verdict is a certificate's check against one generation of the client CA: whether it
// verifies, and until when (the earliest notAfter of its chain).
type verdict struct {
	ok    bool
	until time.Time
}

// certWatch is an open socket's certificate; done is closed when it stops verifying.
type certWatch struct {
	cs   *tls.ConnectionState
	done chan struct{}
}

// ErrCertificateNotValid means the client certificate that authenticated a connection
// has expired or is no longer vouched for by the current client CA.
var ErrCertificateNotValid = errors.New("the client certificate of this connection has expired or is no longer trusted: connect again")

// WithRecheck sets how certificates are checked again after their handshake; it returns p.
func (p *PartnerCerts) WithRecheck(r Recheck) *PartnerCerts {
	p.recheck = r
	return p
}

func (p *PartnerCerts) now() time.Time {
	if p.recheck.Now != nil {
		return p.recheck.Now()
	}
	return time.Now()
}

// maxVerdicts bounds the cache of verdicts (it is emptied when full, and whenever the
// client CA is loaded again).
const maxVerdicts = 10000

// check verifies the connection's client certificate again: its chain's expiry now, and
// its chain against the current client CA pool (once per certificate and generation of
// the pool: a request on a kept-alive connection costs a map lookup and a stat).
func (p *PartnerCerts) check(cs *tls.ConnectionState) verdict {
	if len(cs.PeerCertificates) == 0 {
		return verdict{}
	}
	leaf, now := cs.PeerCertificates[0], p.now()
	if p.recheck.ClientCAs == nil {
		until := leaf.NotAfter
		if len(cs.VerifiedChains) > 0 {
			until = earliest(cs.VerifiedChains[0])
		}
		return verdict{ok: !now.After(until) && !now.Before(leaf.NotBefore), until: until}
	}
	pool, gen := p.recheck.ClientCAs()
	p.mu.Lock()
	if gen != p.cacheGen || len(p.verdicts) >= maxVerdicts {
		p.verdicts, p.cacheGen = map[*x509.Certificate]verdict{}, gen
	}
	v, cached := p.verdicts[leaf]
	p.mu.Unlock()
	if !cached {
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		chains, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, CurrentTime: now})
		if v.ok = err == nil && pool != nil; v.ok {
			v.until = earliest(chains[0])
		}
		p.mu.Lock()
		if p.cacheGen == gen {
			p.verdicts[leaf] = v
		}
		p.mu.Unlock()
	}
	v.ok = v.ok && !now.After(v.until) && !now.Before(leaf.NotBefore)
	return v
}

// earliest is the earliest notAfter of a chain.
func earliest(chain []*x509.Certificate) time.Time {
	var t time.Time
	for _, c := range chain {
		if t.IsZero() || c.NotAfter.Before(t) {
			t = c.NotAfter
		}
	}
	return t
}

// watch returns a channel closed once cs's certificate stops verifying (checked every
// Recheck.Every by one goroutine for all sockets, running while any is watched), and
// stop, which ends the watch.
func (p *PartnerCerts) watch(cs *tls.ConnectionState) (<-chan struct{}, func()) {
	w := &certWatch{cs: cs, done: make(chan struct{})}
	p.mu.Lock()
	if p.watches == nil {
		p.watches = map[*certWatch]struct{}{}
	}
	p.watches[w] = struct{}{}
	if !p.ticking {
		p.ticking = true
		go p.tick()
	}
	p.mu.Unlock()
	return w.done, func() {
		p.mu.Lock()
		delete(p.watches, w)
		p.mu.Unlock()
	}
}

func (p *PartnerCerts) tick() {
	every := p.recheck.Every
	if every <= 0 {
		every = 10 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for range t.C {
		p.mu.Lock()
		if len(p.watches) == 0 {
			p.ticking = false
			p.mu.Unlock()
			return
		}
		ws := make([]*certWatch, 0, len(p.watches))
		for w := range p.watches {
			ws = append(ws, w)
		}
		p.mu.Unlock()
		for _, w := range ws {
			if !p.check(w.cs).ok {
				p.mu.Lock()
				if _, ok := p.watches[w]; ok {
					delete(p.watches, w)
					close(w.done)
				}
				p.mu.Unlock()
			}
		}
	}
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
	p     *PartnerCerts
	cs    *tls.ConnectionState
}

// Middleware authenticates a request whose TLS connection presented a listed partner
// certificate: the partner becomes the request's actor, once its certificate is checked
// again (Recheck: a kept-alive connection outlives its handshake). A certificate that
// no longer passes makes the request unauthenticated (ErrCertificateNotValid) and the
// connection close after it. It runs before Verifier.Middleware, so a request that also
// carries an Authorization header is the token's (a bad token then answers
// UNAUTHENTICATED as usual).
func (p *PartnerCerts) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil {
			if a, _, ok := p.Actor(r.TLS.VerifiedChains); ok {
				if v := p.check(r.TLS); v.ok {
					ctx := WithActor(r.Context(), a)
					r = r.WithContext(context.WithValue(ctx, certKey{}, certState{actor: a, until: v.until, p: p, cs: r.TLS}))
				} else {
					w.Header().Set("Connection", "close")
					r = r.WithContext(WithError(r.Context(), ErrCertificateNotValid))
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// CertificateActor returns the partner the request's client certificate authenticated
// (PartnerCerts.Middleware) and when that certificate (or a CA of its chain) expires: a
// WebSocket opened with it and no token in connection_init is that partner's until then,
// or until WatchCertificate says otherwise.
func CertificateActor(ctx context.Context) (checkout.Actor, time.Time, bool) {
	s, ok := ctx.Value(certKey{}).(certState)
	return s.actor, s.until, ok
}

// WatchCertificate returns, for a request CertificateActor authenticated, a channel
// closed once its certificate stops verifying against the current client CA (checked
// every Recheck.Every), and stop, which the caller calls when the connection ends. For
// any other request the channel is nil (it never closes).
func WatchCertificate(ctx context.Context) (revoked <-chan struct{}, stop func()) {
	s, ok := ctx.Value(certKey{}).(certState)
	if !ok || s.p == nil || s.cs == nil {
		return nil, func() {}
	}
	return s.p.watch(s.cs)
}
