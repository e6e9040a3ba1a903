package stripe

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/checkout-backend/checkout/internal/payment"
	stripego "github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/webhook"
)

// Webhook event types that ParseWebhook decodes.
const (
	EventPaymentIntentSucceeded     = "payment_intent.succeeded"
	EventPaymentIntentPaymentFailed = "payment_intent.payment_failed"
)

// WebhookEvent is a verified Stripe event. Only payment_intent.succeeded and
// payment_intent.payment_failed fill the fields after Type.
type WebhookEvent struct {
	// ID is the event id (evt_...), for de-duplicating deliveries.
	ID string
	// Type is the event type, e.g. payment_intent.succeeded.
	Type string
	// PaymentIntentID is the PaymentIntent's id (pi_...).
	PaymentIntentID string
	// OrderID is the PaymentIntent's metadata order_id.
	OrderID string
	// Status is StatusSucceeded or StatusDeclined.
	Status payment.Status
	// DeclineCode is last_payment_error's decline_code (else code) of a
	// failed payment.
	DeclineCode string
	// Message is last_payment_error's message of a failed payment.
	Message string
	// AmountCents is the PaymentIntent's amount.
	AmountCents int64
	// Currency is the PaymentIntent's currency, upper-case.
	Currency string
}

// ParseWebhook verifies payload against its Stripe-Signature header sigHeader
// with the endpoint's signing secret (whsec_...), rejecting signatures older
// than tolerance (0 means stripe-go's default, 5 minutes), and decodes it.
// Events of any API version are accepted. Any error means the request must
// be rejected (HTTP 400); signature failures wrap stripe-go's webhook errors
// (webhook.ErrNoValidSignature, webhook.ErrTooOld, webhook.ErrNotSigned,
// webhook.ErrInvalidHeader).
func ParseWebhook(payload []byte, sigHeader, secret string, tolerance time.Duration) (WebhookEvent, error) {
	if secret == "" {
		return WebhookEvent{}, errors.New("stripe webhook: signing secret is required")
	}
	ev, err := webhook.ConstructEventWithOptions(payload, sigHeader, secret, webhook.ConstructEventOptions{
		Tolerance:                tolerance,
		IgnoreAPIVersionMismatch: true,
	})
	if err != nil {
		return WebhookEvent{}, fmt.Errorf("stripe webhook: %w", err)
	}
	out := WebhookEvent{ID: ev.ID, Type: string(ev.Type)}
	if out.Type != EventPaymentIntentSucceeded && out.Type != EventPaymentIntentPaymentFailed {
		return out, nil
	}
	if ev.Data == nil || len(ev.Data.Raw) == 0 {
		return WebhookEvent{}, fmt.Errorf("stripe webhook: event %s has no data object", ev.ID)
	}
	var pi stripego.PaymentIntent
	if err := json.Unmarshal(ev.Data.Raw, &pi); err != nil {
		return WebhookEvent{}, fmt.Errorf("stripe webhook: event %s: decoding payment intent: %w", ev.ID, err)
	}
	out.PaymentIntentID = pi.ID
	out.OrderID = pi.Metadata["order_id"]
	out.AmountCents = pi.Amount
	out.Currency = strings.ToUpper(string(pi.Currency))
	if out.Type == EventPaymentIntentSucceeded {
		out.Status = payment.StatusSucceeded
		return out, nil
	}
	out.Status = payment.StatusDeclined
	out.DeclineCode, out.Message = declineOf(pi.LastPaymentError, "")
	if out.DeclineCode == "" {
		out.DeclineCode = "card_declined"
	}
	return out, nil
}

// SignWebhookPayload returns a Stripe-Signature header for payload signed
// with secret at time at (now if zero), for tests of webhook handlers.
func SignWebhookPayload(payload []byte, secret string, at time.Time) string {
	return webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{
		Payload: payload, Secret: secret, Timestamp: at,
	}).Header
}
