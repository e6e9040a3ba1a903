package stripe

import (
	"io"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/payment"
)

// WebhookConsumer is the inbox name of Stripe webhook events.
const WebhookConsumer = "stripe-webhook"

// WebhookHandler is POST /webhooks/stripe: it verifies Stripe's signature (with its
// replay tolerance) and applies payment_intent.succeeded / payment_failed to the order
// the charge belongs to, as the payment worker does, once per Stripe event id.
//
// The order is found from the stored PaymentIntent id, or, for a charge whose answer was
// lost, from the intent's metadata order_id only when a charge of that order was
// attempted and has no other intent. Either way the intent's amount and currency must be
// what was charged: an intent of another amount never pays an order.
//
// Anyone can post to it: a post whose signature fails is logged at most once a second
// (WARN, with how many were refused since the last line), so forged posts cannot fill
// the log; the rate per sender is the caller's (cmd/checkout mounts it behind a limit
// per client address).
type WebhookHandler struct {
	Payments  checkout.PaymentStore
	Secret    string
	Tolerance time.Duration
	Logger    *slog.Logger

	refused atomic.Int64
	logged  atomic.Int64 // when a refusal was last logged (Unix ns)
}

// refusedLogInterval spaces the log lines of refused posts.
const refusedLogInterval = time.Second

// Refused returns how many posts were refused for their signature (metrics, tests).
func (h *WebhookHandler) Refused() int64 { return h.refused.Load() }

// RefuseWebhook answers a post the load shedder in front of the endpoint turned away
// (overload.Options.Reject): Stripe retries any non-2xx delivery.
func RefuseWebhook(w http.ResponseWriter, _ *http.Request, status int) {
	msg := map[int]string{http.StatusTooManyRequests: "too many requests", http.StatusRequestTimeout: "request body not received in time",
		http.StatusRequestEntityTooLarge: "body too large", http.StatusBadRequest: "request body could not be read"}[status]
	if msg == "" {
		msg = "temporarily unavailable"
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write([]byte(`{"error":"` + msg + `"}`))
}

func (h *WebhookHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, `{"error":"method not allowed"}`, http.StatusMethodNotAllowed)
		return
	}
	if h.Secret == "" {
		// Not configured: there is no such endpoint (cmd/checkout does not mount it).
		http.Error(w, `{"error":"not found"}`, http.StatusNotFound)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		http.Error(w, `{"error":"body too large"}`, http.StatusRequestEntityTooLarge)
		return
	}
	ev, err := ParseWebhook(body, r.Header.Get("Stripe-Signature"), h.Secret, h.Tolerance)
	if err != nil {
		n := h.refused.Add(1)
		now, last := time.Now().UnixNano(), h.logged.Load()
		if now-last >= int64(refusedLogInterval) && h.logged.CompareAndSwap(last, now) {
			h.Logger.WarnContext(r.Context(), "stripe webhook refused (logged at most once a second)", "error", err, "refusedSoFar", n)
		}
		http.Error(w, `{"error":"invalid signature"}`, http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	received := func() { w.Write([]byte(`{"received":true}`)) }
	unavailable := func() {
		// Stripe retries a non-2xx delivery: nothing is lost.
		http.Error(w, `{"error":"temporarily unavailable"}`, http.StatusServiceUnavailable)
	}
	if ev.Type != EventPaymentIntentSucceeded && ev.Type != EventPaymentIntentPaymentFailed {
		received()
		return
	}
	pay, err := h.paymentOf(r, ev)
	if err != nil {
		h.Logger.ErrorContext(r.Context(), "stripe webhook: payment lookup failed", "eventId", ev.ID, "error", err)
		unavailable()
		return
	}
	if pay == nil {
		h.Logger.WarnContext(r.Context(), "stripe webhook for an unknown payment", "eventId", ev.ID, "paymentIntent", ev.PaymentIntentID)
		received()
		return
	}
	if !pay.Matches(ev.AmountCents, ev.Currency) {
		h.Logger.WarnContext(r.Context(), "stripe webhook refused: amount or currency is not the order's charge",
			"eventId", ev.ID, "orderId", pay.OrderID, "amount", ev.AmountCents, "currency", ev.Currency,
			"charged", pay.AmountCents, "chargedCurrency", pay.Currency)
		received()
		return
	}
	res := checkout.PaymentResult{Status: checkout.PaymentSucceeded}
	if ev.Status == payment.StatusDeclined {
		res = checkout.PaymentResult{Status: checkout.PaymentDeclined, Reason: ev.DeclineCode}
		if res.Reason == "" {
			res.Reason = ev.Message
		}
	}
	rep := checkout.PaymentReport{OrderID: pay.OrderID, Provider: ProviderName, ProviderPaymentID: ev.PaymentIntentID,
		AmountCents: ev.AmountCents, Currency: ev.Currency, Result: res}
	if _, _, err := h.Payments.Settle(r.Context(), WebhookConsumer, ev.ID, rep); err != nil {
		if checkout.ErrorCode(err) == checkout.NotFound {
			received()
			return
		}
		h.Logger.ErrorContext(r.Context(), "stripe webhook apply failed", "eventId", ev.ID, "error", err)
		unavailable()
		return
	}
	received()
}

// paymentOf finds the payment the event reports on, or nil.
func (h *WebhookHandler) paymentOf(r *http.Request, ev WebhookEvent) (*checkout.Payment, error) {
	if ev.PaymentIntentID != "" {
		pay, err := h.Payments.PaymentByProviderID(r.Context(), ProviderName, ev.PaymentIntentID)
		if err != nil || pay != nil {
			return pay, err
		}
	}
	if ev.OrderID == "" {
		return nil, nil
	}
	pay, err := h.Payments.Payment(r.Context(), ev.OrderID)
	if err != nil || pay == nil {
		return nil, err
	}
	if pay.Provider != ProviderName || pay.ProviderPaymentID != nil && *pay.ProviderPaymentID != ev.PaymentIntentID {
		return nil, nil // another intent (or provider) pays this order: not this one
	}
	return pay, nil
}
