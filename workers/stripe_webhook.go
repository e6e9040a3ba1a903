package workers

import (
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/payment"
	stripegw "github.com/checkout-backend/checkout/internal/payment/stripe"
	"github.com/checkout-backend/checkout/internal/store"
)

// StripeWebhookConsumer is the inbox name of Stripe webhook events.
const StripeWebhookConsumer = "stripe-webhook"

// StripeWebhook is POST /webhooks/stripe: it verifies Stripe's signature (with its
// replay tolerance) and drives payment_intent.succeeded / payment_failed to the same
// outcomes as the payment worker, idempotently by Stripe event id.
type StripeWebhook struct {
	Payments  *store.Payments
	Secret    string
	Tolerance time.Duration
	Logger    *slog.Logger
}

func (h *StripeWebhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, `{"error":"method not allowed"}`, http.StatusMethodNotAllowed)
		return
	}
	if h.Secret == "" {
		http.Error(w, `{"error":"webhooks are not configured"}`, http.StatusServiceUnavailable)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		http.Error(w, `{"error":"body too large"}`, http.StatusRequestEntityTooLarge)
		return
	}
	ev, err := stripegw.ParseWebhook(body, r.Header.Get("Stripe-Signature"), h.Secret, h.Tolerance)
	if err != nil {
		h.Logger.WarnContext(r.Context(), "stripe webhook refused", "error", err)
		http.Error(w, `{"error":"invalid signature"}`, http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if ev.Type != stripegw.EventPaymentIntentSucceeded && ev.Type != stripegw.EventPaymentIntentPaymentFailed {
		w.Write([]byte(`{"received":true}`))
		return
	}
	orderID := ev.OrderID
	if orderID == "" && ev.PaymentIntentID != "" {
		if orderID, err = h.Payments.OrderForPayment(r.Context(), stripegw.ProviderName, ev.PaymentIntentID); err != nil {
			http.Error(w, `{"error":"temporarily unavailable"}`, http.StatusServiceUnavailable)
			return
		}
	}
	if orderID == "" {
		h.Logger.WarnContext(r.Context(), "stripe webhook for an unknown payment", "eventId", ev.ID)
		w.Write([]byte(`{"received":true}`))
		return
	}
	res := checkout.PaymentResult{Status: checkout.PaymentSucceeded}
	if ev.Status == payment.StatusDeclined {
		res = checkout.PaymentResult{Status: checkout.PaymentDeclined, Reason: ev.DeclineCode}
		if res.Reason == "" {
			res.Reason = ev.Message
		}
	}
	pay := store.Payment{OrderID: orderID, Provider: stripegw.ProviderName}
	if ev.PaymentIntentID != "" {
		pay.ProviderPaymentID = &ev.PaymentIntentID
	}
	if _, err := h.Payments.Apply(r.Context(), StripeWebhookConsumer, ev.ID, pay, res); err != nil {
		if checkout.ErrorCode(err) == checkout.NotFound {
			w.Write([]byte(`{"received":true}`))
			return
		}
		h.Logger.ErrorContext(r.Context(), "stripe webhook apply failed", "eventId", ev.ID, "error", err)
		// Stripe retries a non-2xx delivery: nothing is lost.
		http.Error(w, `{"error":"temporarily unavailable"}`, http.StatusServiceUnavailable)
		return
	}
	w.Write([]byte(`{"received":true}`))
}
