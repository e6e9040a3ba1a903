package auth_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/checkout-backend/checkout/internal/platform/auth"
)

// mint signs claims as any issuer of tokens might.
func mint(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func claims(lifetime time.Duration, extra jwt.MapClaims) jwt.MapClaims {
	now := time.Now()
	c := jwt.MapClaims{"sub": "customer-1", "iat": now.Unix(), "exp": now.Add(lifetime).Unix()}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

// TestL4_IssuerAndAudience_RequiredWhenConfigured: with JWT_ISSUER and JWT_AUDIENCE set, a
// token must carry both (aud as a string or among a list); unset, the contract's tokens
// (sub, roles, exp, iat) pass without them.
func TestL4_IssuerAndAudience_RequiredWhenConfigured(t *testing.T) {
	t.Parallel()
	strict := auth.NewVerifierWith(secret, auth.Options{Issuer: "https://auth.shop.example", Audience: "checkout"})
	for name, tc := range map[string]struct {
		extra jwt.MapClaims
		ok    bool
	}{
		"both":               {jwt.MapClaims{"iss": "https://auth.shop.example", "aud": "checkout"}, true},
		"aud in a list":      {jwt.MapClaims{"iss": "https://auth.shop.example", "aud": []string{"search", "checkout"}}, true},
		"no iss":             {jwt.MapClaims{"aud": "checkout"}, false},
		"another issuer":     {jwt.MapClaims{"iss": "https://evil.example", "aud": "checkout"}, false},
		"no aud":             {jwt.MapClaims{"iss": "https://auth.shop.example"}, false},
		"another audience":   {jwt.MapClaims{"iss": "https://auth.shop.example", "aud": "search"}, false},
		"neither (contract)": {nil, false},
	} {
		_, err := strict.Verify(mint(t, claims(time.Hour, tc.extra)))
		if (err == nil) != tc.ok {
			t.Errorf("%s: err = %v, want ok %v", name, err, tc.ok)
		}
	}
	if _, err := auth.NewVerifier(secret).Verify(mint(t, claims(time.Hour, jwt.MapClaims{"roles": []string{"admin"}}))); err != nil {
		t.Errorf("without JWT_ISSUER and JWT_AUDIENCE the contract's token is refused: %v", err)
	}
}

// TestL4_IssuedAtRequired: a token without iat is refused, and so is one issued in the
// future (beyond the clock-skew leeway).
func TestL4_IssuedAtRequired(t *testing.T) {
	t.Parallel()
	v := auth.NewVerifier(secret)
	if _, err := v.Verify(mint(t, claims(time.Hour, jwt.MapClaims{"iat": nil}))); err == nil {
		t.Error("a token without iat was accepted")
	}
	if _, err := v.Verify(mint(t, claims(time.Hour, jwt.MapClaims{"iat": time.Now().Add(10 * time.Minute).Unix()}))); err == nil {
		t.Error("a token issued in ten minutes was accepted")
	}
}

// TestL4_LifetimeBounded: a token whose exp is more than JWT_MAX_LIFETIME after its iat is
// refused (the reviewer's 50-year token was a session, and a socket it opened was never
// closed); every token accepted stops being accepted, and its socket closes, within the
// bound.
func TestL4_LifetimeBounded(t *testing.T) {
	t.Parallel()
	v := auth.NewVerifier(secret)
	for _, life := range []time.Duration{50 * 365 * 24 * time.Hour, auth.DefaultMaxLifetime + time.Minute} {
		if _, _, err := v.VerifyUntil(mint(t, claims(life, nil))); err == nil {
			t.Errorf("a token living %v was accepted", life)
		}
	}
	// Backdating iat does not stretch it either.
	old := claims(0, jwt.MapClaims{"iat": time.Now().Add(-48 * time.Hour).Unix(), "exp": time.Now().Add(time.Hour).Unix()})
	if _, err := v.Verify(mint(t, old)); err == nil {
		t.Error("a token of 49 hours, issued two days ago, was accepted")
	}
	_, until, err := v.VerifyUntil(mint(t, claims(auth.DefaultMaxLifetime, nil)))
	if err != nil {
		t.Fatalf("a token of exactly the bound: %v", err)
	}
	if limit := time.Now().Add(auth.DefaultMaxLifetime + auth.Leeway); until.After(limit) {
		t.Fatalf("accepted until %v, after the bound %v", until, limit)
	}
	short := auth.NewVerifierWith(secret, auth.Options{MaxLifetime: time.Hour})
	if _, err := short.Verify(mint(t, claims(2*time.Hour, nil))); err == nil {
		t.Error("JWT_MAX_LIFETIME=1h accepted a token of 2h")
	}
	// Over HTTP such a token authenticates nobody: protected fields answer UNAUTHENTICATED.
	var got error
	h := v.Middleware(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { _, got = auth.FromContext(r.Context()) }))
	r := httptest.NewRequest(http.MethodPost, "/graphql", nil)
	r.Header.Set("Authorization", "Bearer "+mint(t, claims(50*365*24*time.Hour, nil)))
	h.ServeHTTP(httptest.NewRecorder(), r)
	if got == nil {
		t.Fatal("a 50-year token authenticated a request")
	}
}

// TestL4_SubjectCannotPoseAsCertificatePartner: a token's sub in the namespace of the
// partners authenticated by certificate ("partner:...") is refused, so no token holder
// is the same identity (orders, sockets, rate buckets) as a certificate partner.
func TestL4_SubjectCannotPoseAsCertificatePartner(t *testing.T) {
	t.Parallel()
	v := auth.NewVerifier(secret)
	for _, sub := range []string{"partner:cn:acme", "partner:spiffe://partners.example/acme", "PARTNER:cn:acme", " partner:cn:acme"} {
		if a, err := v.Verify(mint(t, claims(time.Hour, jwt.MapClaims{"sub": sub, "roles": []string{"partner"}}))); err == nil {
			t.Errorf("sub %q was accepted as %+v", sub, a)
		}
	}
	if _, err := v.Verify(mint(t, claims(time.Hour, jwt.MapClaims{"sub": "partner-acme", "roles": []string{"partner"}}))); err != nil {
		t.Errorf("a partner's own subject: %v", err)
	}
}
