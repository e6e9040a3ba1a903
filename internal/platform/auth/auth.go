// Package auth verifies and issues the HS256 JWTs of the contract (claims sub, roles,
// exp; iat too, and iss and aud when configured) and carries the caller through the
// request context.
package auth

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/checkout-backend/checkout/internal/checkout"
)

// Claims are the token's claims.
type Claims struct {
	Roles []string `json:"roles,omitempty"`
	jwt.RegisteredClaims
}

// Verifier checks tokens signed with one secret.
type Verifier struct {
	secret []byte
	opt    Options
	parser *jwt.Parser
}

// Options are the checks a Verifier makes beyond the contract's (HS256, sub, exp).
type Options struct {
	// Issuer, when set, must be the token's iss (JWT_ISSUER).
	Issuer string
	// Audience, when set, must be the token's aud or among it (JWT_AUDIENCE).
	Audience string
	// MaxLifetime bounds exp minus iat (JWT_MAX_LIFETIME; zero: DefaultMaxLifetime).
	MaxLifetime time.Duration
}

// DefaultMaxLifetime is JWT_MAX_LIFETIME's default.
const DefaultMaxLifetime = 24 * time.Hour

// PartnerPrefix starts the customer id of every partner a client certificate
// authenticates (PartnerCerts). Token subjects never start with it, in any case, so that
// no token holder shares a certificate partner's identity: its orders, sockets and rate.
const PartnerPrefix = "partner:"

// NewVerifier returns a Verifier for secret with the default options: no iss or aud
// required, a lifetime of at most DefaultMaxLifetime.
func NewVerifier(secret string) *Verifier { return NewVerifierWith(secret, Options{}) }

// NewVerifierWith returns a Verifier for secret with opt.
func NewVerifierWith(secret string, opt Options) *Verifier {
	if opt.MaxLifetime <= 0 {
		opt.MaxLifetime = DefaultMaxLifetime
	}
	popt := []jwt.ParserOption{jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(), jwt.WithLeeway(Leeway)}
	if opt.Issuer != "" {
		popt = append(popt, jwt.WithIssuer(opt.Issuer))
	}
	if opt.Audience != "" {
		popt = append(popt, jwt.WithAudience(opt.Audience))
	}
	return &Verifier{secret: []byte(secret), opt: opt, parser: jwt.NewParser(popt...)}
}

// ErrInvalidToken means a token was given but cannot be trusted.
var ErrInvalidToken = errors.New("invalid or expired token")

// Leeway is how long after its exp a token is still accepted (clock skew).
const Leeway = 30 * time.Second

// Verify parses a token and returns the actor it names.
func (v *Verifier) Verify(token string) (checkout.Actor, error) {
	a, _, err := v.VerifyUntil(token)
	return a, err
}

// VerifyUntil is Verify that also returns when the token stops being accepted (its exp
// plus Leeway): a connection authenticated once, such as a WebSocket, ends then. The
// token must carry iat, and exp - iat must be within MaxLifetime, so that moment is never
// further than MaxLifetime away: no token is a session for years.
func (v *Verifier) VerifyUntil(token string) (checkout.Actor, time.Time, error) {
	var c Claims
	_, err := v.parser.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return v.secret, nil })
	switch {
	case err != nil, c.Subject == "", c.IssuedAt == nil,
		c.ExpiresAt.Sub(c.IssuedAt.Time) > v.opt.MaxLifetime,
		strings.HasPrefix(strings.ToLower(strings.TrimSpace(c.Subject)), PartnerPrefix):
		return checkout.Actor{}, time.Time{}, ErrInvalidToken
	}
	a := checkout.Actor{CustomerID: c.Subject, Admin: slices.Contains(c.Roles, "admin"), Partner: slices.Contains(c.Roles, "partner")}
	return a, c.ExpiresAt.Add(Leeway), nil
}

// Sign issues a token (for development and tests): sub, roles, iat and exp.
func Sign(secret, sub string, roles []string, ttl time.Duration) (string, error) {
	return SignFor(secret, Options{}, sub, roles, ttl)
}

// SignFor is Sign for a verifier with opt: the token also carries its iss and aud.
func SignFor(secret string, opt Options, sub string, roles []string, ttl time.Duration) (string, error) {
	now := time.Now()
	c := Claims{Roles: roles, RegisteredClaims: jwt.RegisteredClaims{Issuer: opt.Issuer,
		Subject: sub, IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(ttl))}}
	if opt.Audience != "" {
		c.Audience = jwt.ClaimStrings{opt.Audience}
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(secret))
}

type ctxKey struct{}

type state struct {
	actor checkout.Actor
	err   error
	token string // the verified bearer token, when the actor came from one
}

// Token is the bearer token the request's actor was verified from ("" for none, a bad
// one, or an actor a client certificate authenticated): what a request forwarded on the
// caller's behalf (to an order's home region) carries.
func Token(ctx context.Context) string {
	s, _ := ctx.Value(ctxKey{}).(state)
	if s.err != nil {
		return ""
	}
	return s.token
}

// WithActor returns ctx carrying the actor (tests and subscriptions).
func WithActor(ctx context.Context, a checkout.Actor) context.Context {
	return context.WithValue(ctx, ctxKey{}, state{actor: a})
}

// WithVerifiedToken returns ctx carrying the actor verified from token (a socket's
// connection_init): Token then gives it, so a subscription to another region's order
// reads it there on the caller's behalf.
func WithVerifiedToken(ctx context.Context, a checkout.Actor, token string) context.Context {
	return context.WithValue(ctx, ctxKey{}, state{actor: a, token: token})
}

// WithError returns ctx carrying a failed authentication.
func WithError(ctx context.Context, err error) context.Context {
	return context.WithValue(ctx, ctxKey{}, state{err: err})
}

// FromContext returns the caller: the zero Actor when anonymous, and an error when a
// token was given but is bad.
func FromContext(ctx context.Context) (checkout.Actor, error) {
	s, _ := ctx.Value(ctxKey{}).(state)
	return s.actor, s.err
}

// BearerToken extracts the token from an "Authorization: Bearer ..." value.
func BearerToken(header string) (string, bool) {
	const p = "bearer "
	if len(header) > len(p) && strings.EqualFold(header[:len(p)], p) {
		return strings.TrimSpace(header[len(p):]), true
	}
	return "", false
}

// Middleware reads the Authorization header into the request context. A bad token does
// not fail the request here: public fields still answer, protected ones say
// UNAUTHENTICATED.
func (v *Verifier) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Get("Authorization")
		if h == "" {
			next.ServeHTTP(w, r)
			return
		}
		tok, ok := BearerToken(h)
		ctx := r.Context()
		if !ok {
			ctx = WithError(ctx, ErrInvalidToken)
		} else if a, err := v.Verify(tok); err != nil {
			ctx = WithError(ctx, err)
		} else {
			ctx = context.WithValue(ctx, ctxKey{}, state{actor: a, token: tok})
		}
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}
