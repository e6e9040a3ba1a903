package main

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/checkout-backend/checkout/internal/platform/config"
	"github.com/checkout-backend/checkout/internal/platform/overload"
)

// TestL8_StripeWebhook_RateLimitedQuietAndAbsentWithoutSecret: POST /webhooks/stripe
// (finding L8) has a rate per sender address of its own (STRIPE_WEBHOOK_RATE): a flood
// of forged posts from one address is answered 429 past its burst while another
// address (Stripe's) is still heard; the forged posts log at most a line a second; and
// with no STRIPE_WEBHOOK_SECRET there is no endpoint (404, not 503).
func TestL8_StripeWebhook_RateLimitedQuietAndAbsentWithoutSecret(t *testing.T) {
	t.Parallel()
	cfg := config.Defaults()
	cfg.Payment.StripeWebhookSecret = "whsec_l8_test"
	cfg.Overload.StripeWebhookRate = 5 // burst 10
	var logged bytes.Buffer
	mux := http.NewServeMux()
	h := mountStripeWebhook(mux, cfg, overload.ClientKey, nil, slog.New(slog.NewJSONHandler(&logged, nil)), nil)
	if h == nil {
		t.Fatal("not mounted with a secret")
	}
	forge := func(addr string) int {
		r := httptest.NewRequest(http.MethodPost, "/webhooks/stripe", strings.NewReader(`{"id":"evt_forged","type":"payment_intent.succeeded"}`))
		r.Header.Set("Stripe-Signature", "t=1,v1=00")
		r.RemoteAddr = addr
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		return w.Code
	}
	statuses := map[int]int{}
	for range 200 {
		statuses[forge("203.0.113.7:4000")]++
	}
	t.Logf("200 forged posts from one address: %v, %d log lines", statuses, strings.Count(logged.String(), "stripe webhook refused"))
	if statuses[http.StatusBadRequest] > 11 || statuses[http.StatusTooManyRequests] < 189 {
		t.Fatalf("200 forged posts from one address at a burst of 10: %v", statuses)
	}
	if code := forge("54.187.174.169:443"); code != http.StatusBadRequest {
		t.Fatalf("another sender after the flood: %d, want its own bucket (400 for a bad signature)", code)
	}
	if lines := strings.Count(logged.String(), "stripe webhook refused"); lines > 2 {
		t.Fatalf("%d log lines for %d refused posts:\n%s", lines, h.Refused(), logged.String())
	}

	cfg.Payment.StripeWebhookSecret = ""
	mux = http.NewServeMux()
	if mountStripeWebhook(mux, cfg, overload.ClientKey, nil, slog.New(slog.NewJSONHandler(&logged, nil)), nil) != nil {
		t.Fatal("mounted without a secret")
	}
	if code := forge("203.0.113.8:4000"); code != http.StatusNotFound {
		t.Fatalf("without STRIPE_WEBHOOK_SECRET: %d, want 404", code)
	}
}
