package stripe_test

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/checkout-backend/checkout/internal/payment"
	"github.com/checkout-backend/checkout/internal/payment/stripe"
)

const fakeKey = "sk_test_fake"

// recorded is one request the fake received.
type recorded struct {
	Method, Path, Auth, IdempotencyKey string
	Form                               url.Values
}

type cachedResponse struct {
	request string // what was asked with the key (path and form)
	status  int
	body    string
}

// intent is what the fake remembers of a payment intent it created.
type intent struct {
	amount, refunded int64
	succeeded        bool
}

// fakeStripe speaks enough of Stripe's wire format for the adapter: form
// encoded POST /v1/payment_intents and /v1/refunds, JSON objects and Stripe
// error objects, idempotency (a repeated Idempotency-Key replays the first
// completed, non-5xx, non-429 response; with other parameters it is an
// idempotency_error), and a ledger of what each payment intent can still
// refund (unknown payments, declined ones and refunds beyond the amount are
// refused as Stripe refuses them).
type fakeStripe struct {
	*httptest.Server

	mu       sync.Mutex
	requests []recorded
	replay   map[string]cachedResponse
	charges  map[string]string  // idempotency key -> payment intent id
	intents  map[string]*intent // by payment intent id and by its charge's id (ch_...)
	// script, if set, may answer request n (0-based) itself by returning
	// true, before idempotency and the default behaviour.
	script func(n int, w http.ResponseWriter, r *http.Request) bool
}

func newFake(t *testing.T, script func(n int, w http.ResponseWriter, r *http.Request) bool) *fakeStripe {
	t.Helper()
	f := &fakeStripe{replay: map[string]cachedResponse{}, charges: map[string]string{}, intents: map[string]*intent{}, script: script}
	f.Server = httptest.NewServer(http.HandlerFunc(f.handle))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeStripe) handle(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeJSON(w, 400, stripeError("invalid_request_error", "", "", "bad form"))
		return
	}
	rec := recorded{Method: r.Method, Path: r.URL.Path, Auth: r.Header.Get("Authorization"), IdempotencyKey: r.Header.Get("Idempotency-Key"), Form: r.PostForm}
	f.mu.Lock()
	n := len(f.requests)
	f.requests = append(f.requests, rec)
	f.mu.Unlock()

	if f.script != nil && f.script(n, w, r) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	request := rec.Path + "?" + rec.Form.Encode()
	if c, ok := f.replay[rec.IdempotencyKey]; ok && rec.IdempotencyKey != "" {
		if c.request != request {
			writeJSON(w, 400, stripeError("idempotency_error", "", "", "Keys for idempotent requests can only be used with the same parameters they were first used with."))
			return
		}
		w.Header().Set("Idempotent-Replayed", "true")
		writeJSON(w, c.status, c.body)
		return
	}
	status, body := f.respond(n, rec)
	if status < 500 && status != 429 && status != 409 {
		f.replay[rec.IdempotencyKey] = cachedResponse{request, status, body}
	}
	writeJSON(w, status, body)
}

// respond is the default behaviour, called with f.mu held.
func (f *fakeStripe) respond(n int, rec recorded) (int, string) {
	switch {
	case rec.Method == http.MethodPost && rec.Path == "/v1/payment_intents":
		token := rec.Form.Get("payment_method")
		if token == "" {
			token = rec.Form.Get("payment_method_data[card][token]")
		}
		name := strings.TrimPrefix(strings.TrimPrefix(token, "tok_"), "pm_card_")
		id := fmt.Sprintf("pi_fake%d", n)
		amount := rec.Form.Get("amount")
		pi := func(status, extra string) string {
			return fmt.Sprintf(`{"id":%q,"object":"payment_intent","amount":%s,"currency":%q,"status":%q,"metadata":{"order_id":%q}%s}`,
				id, amount, rec.Form.Get("currency"), status, rec.Form.Get("metadata[order_id]"), extra)
		}
		charged := func(status int, body string) (int, string) {
			f.charges[rec.IdempotencyKey] = id
			n, _ := strconv.ParseInt(amount, 10, 64)
			in := &intent{amount: n, succeeded: strings.Contains(body, `"status":"succeeded"`)}
			f.intents[id], f.intents["ch_"+strings.TrimPrefix(id, "pi_")] = in, in
			return status, body
		}
		switch name {
		case "visa", "mastercard", "amex":
			return charged(200, pi("succeeded", ""))
		case "threeDSecure2Required":
			return charged(200, pi("requires_action", `,"next_action":{"type":"use_stripe_sdk"}`))
		case "processing":
			return charged(200, pi("processing", ""))
		case "requiresPaymentMethod":
			return charged(200, pi("requires_payment_method",
				`,"last_payment_error":{"type":"card_error","code":"card_declined","decline_code":"do_not_honor","message":"Your card was declined."}`))
		case "chargeDeclined":
			return charged(402, stripeError("card_error", "card_declined", "generic_decline", "Your card was declined.", pi("requires_payment_method", "")))
		case "chargeDeclinedInsufficientFunds":
			return charged(402, stripeError("card_error", "card_declined", "insufficient_funds", "Your card has insufficient funds.", pi("requires_payment_method", "")))
		case "chargeDeclinedExpiredCard":
			return charged(402, stripeError("card_error", "expired_card", "", "Your card has expired."))
		default:
			// Stripe quotes the unknown id back: the adapter must redact it.
			return 400, stripeError("invalid_request_error", "resource_missing", "", fmt.Sprintf("No such PaymentMethod: '%s'", token))
		}
	case rec.Method == http.MethodPost && rec.Path == "/v1/refunds":
		id := cmp.Or(rec.Form.Get("payment_intent"), rec.Form.Get("charge"))
		in, ok := f.intents[id]
		switch {
		case !ok:
			return 404, stripeError("invalid_request_error", "resource_missing", "", fmt.Sprintf("No such payment_intent: '%s'", id))
		case !in.succeeded:
			return 400, stripeError("invalid_request_error", "charge_not_refundable", "", "This PaymentIntent does not have a successful charge to refund.")
		case in.refunded == in.amount:
			return 400, stripeError("invalid_request_error", "charge_already_refunded", "", "Charge has already been refunded.")
		}
		amount := in.amount - in.refunded
		if a := rec.Form.Get("amount"); a != "" {
			amount, _ = strconv.ParseInt(a, 10, 64)
		}
		if amount > in.amount-in.refunded {
			return 400, stripeError("invalid_request_error", "amount_too_large", "", "Refund amount is greater than unrefunded amount on charge.")
		}
		in.refunded += amount
		return 200, fmt.Sprintf(`{"id":"re_fake%d","object":"refund","amount":%d,"payment_intent":%q,"status":"succeeded"}`,
			n, amount, rec.Form.Get("payment_intent"))
	}
	return 404, stripeError("invalid_request_error", "", "", "Unrecognized request URL")
}

func (f *fakeStripe) Requests() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recorded(nil), f.requests...)
}

// Charges counts distinct charges: distinct idempotency keys that created a
// payment intent.
func (f *fakeStripe) Charges() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.charges)
}

func stripeError(typ, code, declineCode, msg string, paymentIntent ...string) string {
	e := map[string]any{"type": typ, "message": msg}
	if code != "" {
		e["code"] = code
	}
	if declineCode != "" {
		e["decline_code"] = declineCode
	}
	if len(paymentIntent) > 0 {
		e["payment_intent"] = json.RawMessage(paymentIntent[0])
	}
	b, _ := json.Marshal(map[string]any{"error": e})
	return string(b)
}

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Request-Id", "req_fake")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

func newGateway(t *testing.T, apiBase string, timeout time.Duration) *stripe.Gateway {
	t.Helper()
	g, err := stripe.New(stripe.Config{SecretKey: fakeKey, APIBase: apiBase, Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func chargeReq(token, key string) payment.ChargeRequest {
	return payment.ChargeRequest{OrderID: "order-7", AmountCents: 4200, Currency: "USD", Token: token, IdempotencyKey: key}
}

// fastResilient keeps backoff waits to milliseconds.
func fastResilient(g payment.Gateway, o payment.ResilientOptions) *payment.Resilient {
	o.InitialInterval = 5 * time.Millisecond
	o.MaxInterval = 20 * time.Millisecond
	o.MaxElapsedTime = 3 * time.Second
	return payment.NewResilient(g, o)
}
