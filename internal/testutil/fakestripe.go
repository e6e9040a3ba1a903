package testutil

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
)

// FakeStripe speaks enough of Stripe's wire format for the Stripe adapter and the saga:
// form-encoded POST /v1/payment_intents and /v1/refunds, JSON objects and Stripe error
// objects, Stripe's test payment methods (pm_card_visa, tok_chargeDeclined, ...) answered
// as Stripe answers them, idempotency (a repeated Idempotency-Key replays the first
// completed, non-5xx, non-429 response; with other parameters it is an idempotency_error),
// and a ledger of what each payment intent can still refund (unknown payments, declined
// ones and refunds beyond the amount are refused as Stripe refuses them). SetMode makes
// it answer 5xx or hang; a script may answer any request itself. Where stripe-mock (which
// validates requests but answers from fixtures) cannot express a case, this can.
type FakeStripe struct {
	*httptest.Server

	mu       sync.Mutex
	mode     string // "ok", "5xx", "hang"
	requests []StripeRequest
	replay   map[string]stripeReplay
	charges  map[string]string        // idempotency key -> payment intent id
	intents  map[string]*stripeIntent // by payment intent id and by its charge's id (ch_...)
	script   func(n int, w http.ResponseWriter, r *http.Request) bool
}

// StripeRequest is one request the fake received.
type StripeRequest struct {
	Method, Path, Auth, IdempotencyKey string
	Form                               url.Values
}

type stripeReplay struct {
	request string // what was asked with the key (path and form)
	status  int
	body    string
}

type stripeIntent struct {
	amount, refunded int64
	succeeded        bool
}

// NewFakeStripe starts the server; it stops at cleanup. script, if given, may answer
// request n (0-based) itself by returning true, before the mode, idempotency and the
// default behaviour.
func NewFakeStripe(t testing.TB, script ...func(n int, w http.ResponseWriter, r *http.Request) bool) *FakeStripe {
	t.Helper()
	f := &FakeStripe{mode: "ok", replay: map[string]stripeReplay{}, charges: map[string]string{}, intents: map[string]*stripeIntent{}}
	if len(script) > 0 {
		f.script = script[0]
	}
	f.Server = httptest.NewServer(http.HandlerFunc(f.handle))
	t.Cleanup(f.Close)
	return f
}

// SetMode switches the answers: "ok", "5xx" (503, Stripe's api_error) or "hang" (no
// answer until the client gives up, or 30 s).
func (f *FakeStripe) SetMode(m string) {
	f.mu.Lock()
	f.mode = m
	f.mu.Unlock()
}

// Requests are the requests that reached the server, in order.
func (f *FakeStripe) Requests() []StripeRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]StripeRequest(nil), f.requests...)
}

// Charges counts distinct charges: distinct idempotency keys that created a payment
// intent.
func (f *FakeStripe) Charges() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.charges)
}

func (f *FakeStripe) handle(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		WriteStripeJSON(w, 400, StripeError("invalid_request_error", "", "", "bad form"))
		return
	}
	rec := StripeRequest{Method: r.Method, Path: r.URL.Path, Auth: r.Header.Get("Authorization"), IdempotencyKey: r.Header.Get("Idempotency-Key"), Form: r.PostForm}
	f.mu.Lock()
	n := len(f.requests)
	f.requests = append(f.requests, rec)
	mode := f.mode
	f.mu.Unlock()

	if f.script != nil && f.script(n, w, r) {
		return
	}
	switch mode {
	case "hang":
		select {
		case <-r.Context().Done():
		case <-time.After(30 * time.Second):
		}
		return
	case "5xx":
		WriteStripeJSON(w, http.StatusServiceUnavailable, StripeError("api_error", "", "", "Stripe is down (fake)"))
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	request := rec.Path + "?" + rec.Form.Encode()
	if c, ok := f.replay[rec.IdempotencyKey]; ok && rec.IdempotencyKey != "" {
		if c.request != request {
			WriteStripeJSON(w, 400, StripeError("idempotency_error", "", "", "Keys for idempotent requests can only be used with the same parameters they were first used with."))
			return
		}
		w.Header().Set("Idempotent-Replayed", "true")
		WriteStripeJSON(w, c.status, c.body)
		return
	}
	status, body := f.respond(n, rec)
	if status < 500 && status != 429 && status != 409 {
		f.replay[rec.IdempotencyKey] = stripeReplay{request, status, body}
	}
	WriteStripeJSON(w, status, body)
}

// respond is the default behaviour, called with f.mu held.
func (f *FakeStripe) respond(n int, rec StripeRequest) (int, string) {
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
			in := &stripeIntent{amount: n, succeeded: strings.Contains(body, `"status":"succeeded"`)}
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
			return charged(402, StripeError("card_error", "card_declined", "generic_decline", "Your card was declined.", pi("requires_payment_method", "")))
		case "chargeDeclinedInsufficientFunds":
			return charged(402, StripeError("card_error", "card_declined", "insufficient_funds", "Your card has insufficient funds.", pi("requires_payment_method", "")))
		case "chargeDeclinedExpiredCard":
			return charged(402, StripeError("card_error", "expired_card", "", "Your card has expired."))
		default:
			// Stripe quotes the unknown id back: the adapter must redact it.
			return 400, StripeError("invalid_request_error", "resource_missing", "", fmt.Sprintf("No such PaymentMethod: '%s'", token))
		}
	case rec.Method == http.MethodPost && rec.Path == "/v1/refunds":
		id := cmp.Or(rec.Form.Get("payment_intent"), rec.Form.Get("charge"))
		in, ok := f.intents[id]
		switch {
		case !ok:
			return 404, StripeError("invalid_request_error", "resource_missing", "", fmt.Sprintf("No such payment_intent: '%s'", id))
		case !in.succeeded:
			return 400, StripeError("invalid_request_error", "charge_not_refundable", "", "This PaymentIntent does not have a successful charge to refund.")
		case in.refunded == in.amount:
			return 400, StripeError("invalid_request_error", "charge_already_refunded", "", "Charge has already been refunded.")
		}
		amount := in.amount - in.refunded
		if a := rec.Form.Get("amount"); a != "" {
			amount, _ = strconv.ParseInt(a, 10, 64)
		}
		if amount > in.amount-in.refunded {
			return 400, StripeError("invalid_request_error", "amount_too_large", "", "Refund amount is greater than unrefunded amount on charge.")
		}
		in.refunded += amount
		return 200, fmt.Sprintf(`{"id":"re_fake%d","object":"refund","amount":%d,"payment_intent":%q,"status":"succeeded"}`,
			n, amount, rec.Form.Get("payment_intent"))
	}
	return 404, StripeError("invalid_request_error", "", "", "Unrecognized request URL")
}

// StripeError is a Stripe error object of type typ, with its code, decline code and the
// payment intent it concerns when given.
func StripeError(typ, code, declineCode, msg string, paymentIntent ...string) string {
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

// WriteStripeJSON answers as Stripe does: JSON with a request id.
func WriteStripeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Request-Id", "req_fake")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}
