package stripe_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/checkout-backend/checkout/internal/payment"
	"github.com/checkout-backend/checkout/internal/payment/resilience"
	"github.com/sony/gobreaker"
)

func TestChargeWireFormat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		token string
		want  map[string]string
	}{
		{"pm_card_visa", map[string]string{"payment_method": "pm_card_visa"}},
		{"tok_visa", map[string]string{"payment_method_data[type]": "card", "payment_method_data[card][token]": "tok_visa"}},
	}
	for _, tc := range tests {
		t.Run(tc.token, func(t *testing.T) {
			t.Parallel()
			f := newFake(t, nil)
			g := newGateway(t, f.URL, time.Second)
			c, err := g.Charge(context.Background(), chargeReq(tc.token, "idem-"+tc.token))
			if err != nil {
				t.Fatalf("Charge: %v", err)
			}
			if c.Status != payment.StatusSucceeded || c.ProviderPaymentID != "pi_fake0" || c.AmountCents != 4200 {
				t.Fatalf("Charge = %+v", c)
			}
			reqs := f.Requests()
			if len(reqs) != 1 {
				t.Fatalf("requests = %d, want 1", len(reqs))
			}
			r := reqs[0]
			if r.Method != http.MethodPost || r.Path != "/v1/payment_intents" || r.Auth != "Bearer "+fakeKey || r.IdempotencyKey != "idem-"+tc.token {
				t.Fatalf("request = %+v", r)
			}
			want := map[string]string{
				"amount": "4200", "currency": "usd", "confirm": "true",
				"payment_method_types[0]": "card", "metadata[order_id]": "order-7",
			}
			for k, v := range tc.want {
				want[k] = v
			}
			for k, v := range want {
				if got := r.Form.Get(k); got != v {
					t.Errorf("form %s = %q, want %q (form %v)", k, got, v, r.Form)
				}
			}
		})
	}
}

func TestChargeProcessingIsPending(t *testing.T) {
	t.Parallel()
	f := newFake(t, nil)
	r := fastResilient(newGateway(t, f.URL, time.Second), resilience.Options{})
	c, err := r.Charge(context.Background(), chargeReq("pm_card_processing", "k"))
	if !errors.Is(err, payment.ErrPending) || payment.IsTransient(err) || c.ProviderPaymentID != "pi_fake0" {
		t.Fatalf("Charge = %+v, %v; want the intent id and ErrPending", c, err)
	}
	if n := len(f.Requests()); n != 1 {
		t.Fatalf("requests = %d, want 1: a pending outcome is not retried", n)
	}
}

// (a) A decline is a result, not an error, and is never retried.
func TestDeclineIsNotRetried(t *testing.T) {
	t.Parallel()
	f := newFake(t, nil)
	r := fastResilient(newGateway(t, f.URL, time.Second), resilience.Options{FailureThreshold: 1})
	c, err := r.Charge(context.Background(), chargeReq("pm_card_chargeDeclinedInsufficientFunds", "order-7/charge"))
	if err != nil {
		t.Fatalf("Charge: %v", err)
	}
	if c.Status != payment.StatusDeclined || c.DeclineCode != "insufficient_funds" || c.Message != "Your card has insufficient funds." {
		t.Fatalf("Charge = %+v", c)
	}
	if n := len(f.Requests()); n != 1 {
		t.Fatalf("server saw %d requests, want 1", n)
	}
	if r.State() != gobreaker.StateClosed {
		t.Fatalf("a decline tripped the breaker")
	}
}

// (b) A server slower than the client timeout is a transient error.
func TestTimeoutIsTransient(t *testing.T) {
	t.Parallel()
	f := newFake(t, func(_ int, _ http.ResponseWriter, r *http.Request) bool {
		select {
		case <-r.Context().Done():
		case <-time.After(3 * time.Second):
		}
		return true
	})
	g := newGateway(t, f.URL, 300*time.Millisecond)
	const token = "tok_visa"
	start := time.Now()
	_, err := g.Charge(context.Background(), chargeReq(token, "k"))
	elapsed := time.Since(start)
	var te *payment.TransientError
	if !payment.IsTransient(err) || !errors.As(err, &te) || te.Code != "timeout" {
		t.Fatalf("err = %v, want a transient timeout", err)
	}
	if elapsed < 250*time.Millisecond || elapsed > 2*time.Second {
		t.Fatalf("took %v, want about the 300ms client timeout", elapsed)
	}
	if strings.Contains(err.Error(), token) {
		t.Fatalf("error %q contains the token", err)
	}
}

// (c) A 500 then success: the retry carries the same Idempotency-Key and
// the provider charges once.
func TestServerErrorThenSuccessChargesOnce(t *testing.T) {
	t.Parallel()
	f := newFake(t, func(n int, w http.ResponseWriter, _ *http.Request) bool {
		if n == 0 {
			writeJSON(w, 500, stripeError("api_error", "", "", "An unknown error occurred"))
			return true
		}
		return false
	})
	var retried error
	r := fastResilient(newGateway(t, f.URL, time.Second), resilience.Options{
		OnRetry: func(_ string, err error, _ time.Duration) { retried = err },
	})
	c, err := r.Charge(context.Background(), chargeReq("pm_card_visa", "order-7/charge/1"))
	if err != nil || c.Status != payment.StatusSucceeded || c.ProviderPaymentID == "" {
		t.Fatalf("Charge = %+v, %v", c, err)
	}
	var te *payment.TransientError
	if !errors.As(retried, &te) || te.HTTPStatus != 500 {
		t.Fatalf("retried on %v, want the 500", retried)
	}
	reqs := f.Requests()
	if len(reqs) != 2 {
		t.Fatalf("server saw %d requests, want 2", len(reqs))
	}
	if reqs[0].IdempotencyKey != "order-7/charge/1" || reqs[1].IdempotencyKey != reqs[0].IdempotencyKey {
		t.Fatalf("idempotency keys = %q, %q; want the same charge key twice", reqs[0].IdempotencyKey, reqs[1].IdempotencyKey)
	}
	if reqs[0].Form.Encode() != reqs[1].Form.Encode() {
		t.Fatalf("retry sent other parameters:\n%v\n%v", reqs[0].Form, reqs[1].Form)
	}
	if f.Charges() != 1 {
		t.Fatalf("charges = %d, want 1", f.Charges())
	}
	// Resending the same charge later replays it: still one charge.
	again, err := r.Charge(context.Background(), chargeReq("pm_card_visa", "order-7/charge/1"))
	if err != nil || again.ProviderPaymentID != c.ProviderPaymentID || f.Charges() != 1 {
		t.Fatalf("replay = %+v, %v, charges %d", again, err, f.Charges())
	}
}

// (d) A run of 5xx opens the breaker; then calls fail fast without reaching
// the server.
func TestServerErrorsOpenBreaker(t *testing.T) {
	t.Parallel()
	f := newFake(t, func(_ int, w http.ResponseWriter, _ *http.Request) bool {
		writeJSON(w, 503, stripeError("api_error", "", "", "Service unavailable"))
		return true
	})
	var (
		mu          sync.Mutex
		transitions []string
	)
	const threshold = 3
	r := fastResilient(newGateway(t, f.URL, time.Second), resilience.Options{
		FailureThreshold: threshold,
		MaxTries:         5,
		OnStateChange: func(name string, from, to gobreaker.State) {
			mu.Lock()
			defer mu.Unlock()
			transitions = append(transitions, name+" "+from.String()+"->"+to.String())
		},
	})
	// One call: 3 attempts reach the server and trip the breaker, the last 2
	// are refused by it.
	_, err := r.Charge(context.Background(), chargeReq("pm_card_visa", "k1"))
	if !errors.Is(err, gobreaker.ErrOpenState) || !payment.IsTransient(err) {
		t.Fatalf("err = %v, want the open breaker", err)
	}
	if n := len(f.Requests()); n != threshold {
		t.Fatalf("server saw %d requests, want %d", n, threshold)
	}
	if r.State() != gobreaker.StateOpen {
		t.Fatalf("state = %v, want open", r.State())
	}
	for range 3 {
		start := time.Now()
		if _, err := r.Charge(context.Background(), chargeReq("pm_card_visa", "k2")); !errors.Is(err, gobreaker.ErrOpenState) {
			t.Fatalf("err = %v, want the open breaker", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("open breaker took %v", d)
		}
	}
	if n := len(f.Requests()); n != threshold {
		t.Fatalf("server saw %d requests with the breaker open, want still %d", n, threshold)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(transitions) != 1 || transitions[0] != "payment-stripe closed->open" {
		t.Fatalf("transitions = %v, want [payment-stripe closed->open]", transitions)
	}
}

func TestErrorClassification(t *testing.T) {
	t.Parallel()
	const token = "pm_card_secret123"
	tests := []struct {
		name      string
		status    int
		body      string
		header    string
		transient bool
		code      string
	}{
		{"429", 429, stripeError("invalid_request_error", "rate_limit", "", "Too many requests"), "", true, "rate_limit"},
		{"409 conflict", 409, stripeError("idempotency_error", "", "", "Keys for idempotent requests can only be used with the same parameters"), "", true, "idempotency_error"},
		{"502 html", 502, "<html>bad gateway</html>", "", true, ""},
		{"500 should-retry false", 500, stripeError("api_error", "", "", "nope"), "false", false, "api_error"},
		{"400 should-retry true", 400, stripeError("invalid_request_error", "lock_timeout", "", "locked"), "true", true, "lock_timeout"},
		{"400 invalid", 400, stripeError("invalid_request_error", "resource_missing", "", "No such PaymentMethod: '"+token+"'"), "", false, "resource_missing"},
		{"401", 401, stripeError("invalid_request_error", "", "", "Invalid API Key provided: sk_test_****fake"), "", false, "invalid_request_error"},
		{"200 garbage", 200, "{not json", "", true, ""},
		{"403 html", 403, "<html>forbidden</html>", "", false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t, func(_ int, w http.ResponseWriter, _ *http.Request) bool {
				if tc.header != "" {
					w.Header().Set("Stripe-Should-Retry", tc.header)
				}
				writeJSON(w, tc.status, tc.body)
				return true
			})
			_, err := newGateway(t, f.URL, time.Second).Charge(context.Background(), chargeReq(token, "k"))
			if err == nil {
				t.Fatal("no error")
			}
			t.Log(err)
			if payment.IsTransient(err) != tc.transient || payment.IsPermanent(err) == tc.transient {
				t.Fatalf("err = %v (%T): transient = %v, want %v", err, err, payment.IsTransient(err), tc.transient)
			}
			var te *payment.TransientError
			var pe *payment.PermanentError
			switch {
			case errors.As(err, &te):
				if te.Code != tc.code || te.Provider != "stripe" || te.Op != "charge" || te.HTTPStatus != tc.status {
					t.Errorf("TransientError = %+v, want code %q", te, tc.code)
				}
			case errors.As(err, &pe):
				if pe.Code != tc.code || pe.HTTPStatus != tc.status {
					t.Errorf("PermanentError = %+v, want code %q status %d", pe, tc.code, tc.status)
				}
			}
			if strings.Contains(err.Error(), token) || strings.Contains(err.Error(), "secret123") {
				t.Fatalf("error %q contains the token", err)
			}
		})
	}
}

func TestUnreachableIsTransient(t *testing.T) {
	t.Parallel()
	f := newFake(t, nil)
	base := f.URL
	f.Close()
	_, err := newGateway(t, base, time.Second).Charge(context.Background(), chargeReq("tok_visa", "k"))
	if !payment.IsTransient(err) || strings.Contains(err.Error(), "tok_visa") {
		t.Fatalf("err = %v, want transient without the token", err)
	}
}

func TestCanceledContextIsNotTransient(t *testing.T) {
	t.Parallel()
	f := newFake(t, func(_ int, _ http.ResponseWriter, r *http.Request) bool {
		<-r.Context().Done()
		return true
	})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	_, err := newGateway(t, f.URL, 5*time.Second).Charge(ctx, chargeReq("tok_visa", "k"))
	if !errors.Is(err, context.Canceled) || payment.IsTransient(err) {
		t.Fatalf("err = %v, want context.Canceled, not transient", err)
	}
}

func TestInvalidRequestsAreNotSent(t *testing.T) {
	t.Parallel()
	f := newFake(t, nil)
	g := newGateway(t, f.URL, time.Second)
	bad := []payment.ChargeRequest{
		chargeReq("src_legacy", "k"),
		chargeReq("4242424242424242", "k"),
		chargeReq("tok_visa", ""),
		{AmountCents: 0, Currency: "USD", Token: "tok_visa", IdempotencyKey: "k"},
	}
	for _, r := range bad {
		_, err := g.Charge(context.Background(), r)
		var pe *payment.PermanentError
		if !errors.As(err, &pe) || pe.Provider != "stripe" || pe.HTTPStatus != 0 {
			t.Errorf("Charge(%q...) = %v, want a *PermanentError before sending", r.Token[:3], err)
		}
		if strings.Contains(err.Error(), r.Token) {
			t.Errorf("error %q contains the token", err)
		}
	}
	if n := len(f.Requests()); n != 0 {
		t.Fatalf("%d invalid requests reached the server", n)
	}
}

func TestRefundWireFormat(t *testing.T) {
	t.Parallel()
	f := newFake(t, nil)
	g := newGateway(t, f.URL, time.Second)
	c, err := g.Charge(context.Background(), chargeReq("pm_card_visa", "order-7/charge"))
	if err != nil || c.ProviderPaymentID != "pi_fake0" {
		t.Fatalf("Charge = %+v, %v", c, err)
	}
	ref, err := g.Refund(context.Background(), payment.RefundRequest{
		OrderID: "order-7", ProviderPaymentID: "pi_fake0", AmountCents: 1500, IdempotencyKey: "order-7/refund/1", Reason: "requested_by_customer",
	})
	if err != nil || ref.ProviderRefundID != "re_fake1" || ref.Status != "succeeded" {
		t.Fatalf("Refund = %+v, %v", ref, err)
	}
	// A ch_ id (a charge, as older integrations store it) is refunded as a charge.
	if _, err := g.Refund(context.Background(), payment.RefundRequest{ProviderPaymentID: "ch_fake0", IdempotencyKey: "r2", Reason: "out of stock"}); err != nil {
		t.Fatal(err)
	}
	reqs := f.Requests()[1:]
	want := []map[string]string{
		{"payment_intent": "pi_fake0", "amount": "1500", "reason": "requested_by_customer", "metadata[order_id]": "order-7", "charge": ""},
		{"charge": "ch_fake0", "payment_intent": "", "amount": "", "reason": "", "metadata[reason]": "out of stock"},
	}
	for i, w := range want {
		if reqs[i].Path != "/v1/refunds" {
			t.Fatalf("path = %s", reqs[i].Path)
		}
		for k, v := range w {
			if got := reqs[i].Form.Get(k); got != v {
				t.Errorf("refund %d: form %s = %q, want %q", i, k, got, v)
			}
		}
	}
	if reqs[0].IdempotencyKey != "order-7/refund/1" {
		t.Errorf("Idempotency-Key = %q", reqs[0].IdempotencyKey)
	}
}
