package auth

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestDevTokenHandler_MintsACustomersTokenTheVerifierAccepts: the development sign-in
// answers a token that the service's verifier (same secret, iss, aud) takes as that
// customer, with no role, and refuses names that are not plain names (a partner's
// namespace, empty, too long, not JSON) with 400 and no token.
func TestDevTokenHandler_MintsACustomersTokenTheVerifierAccepts(t *testing.T) {
	opt := Options{Issuer: "https://id.shop.example", Audience: "checkout"}
	h := DevTokenHandler("s3cret-s3cret-s3cret-s3cret-s3cret", opt)
	post := func(body string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/dev/token", strings.NewReader(body)))
		return rec
	}
	rec := post(`{"name":"alice"}`)
	if rec.Code != http.StatusOK {
		t.Fatalf("alice: %d %s", rec.Code, rec.Body)
	}
	var out struct{ Token, Subject string }
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Subject != "alice" {
		t.Fatalf("answer %s: %v", rec.Body, err)
	}
	a, err := NewVerifierWith("s3cret-s3cret-s3cret-s3cret-s3cret", opt).Verify(out.Token)
	if err != nil || a.CustomerID != "alice" || a.Admin || a.Partner {
		t.Fatalf("verified as %+v, %v; want the customer alice, no role", a, err)
	}
	for _, body := range []string{`{"name":"partner:acme"}`, `{"name":""}`, `{"name":"` + strings.Repeat("a", 65) + `"}`, `alice`, `{"name":"a b"}`} {
		if rec := post(body); rec.Code != http.StatusBadRequest || strings.Contains(rec.Body.String(), "token\"") {
			t.Errorf("%.30s: %d %s, want 400 and no token", body, rec.Code, rec.Body)
		}
	}
}
