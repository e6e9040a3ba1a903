package stripe_test

import (
	"errors"
	"testing"
	"time"

	"github.com/checkout-backend/checkout/internal/payment"
	"github.com/checkout-backend/checkout/internal/payment/stripe"
	"github.com/stripe/stripe-go/v76/webhook"
)

const whsec = "whsec_test_secret"

func event(id, typ, object string) []byte {
	return []byte(`{"id":"` + id + `","object":"event","api_version":"2020-08-27","type":"` + typ + `","data":{"object":` + object + `}}`)
}

func TestParseWebhook(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		payload []byte
		want    stripe.WebhookEvent
	}{
		{
			"succeeded",
			event("evt_1", "payment_intent.succeeded", `{"id":"pi_1","object":"payment_intent","amount":4200,"status":"succeeded","metadata":{"order_id":"order-7"}}`),
			stripe.WebhookEvent{ID: "evt_1", Type: "payment_intent.succeeded", PaymentIntentID: "pi_1", OrderID: "order-7", Status: payment.StatusSucceeded, AmountCents: 4200},
		},
		{
			"payment_failed",
			event("evt_2", "payment_intent.payment_failed", `{"id":"pi_2","object":"payment_intent","amount":990,"status":"requires_payment_method","metadata":{"order_id":"order-8"},
				"last_payment_error":{"type":"card_error","code":"card_declined","decline_code":"insufficient_funds","message":"Your card has insufficient funds."}}`),
			stripe.WebhookEvent{ID: "evt_2", Type: "payment_intent.payment_failed", PaymentIntentID: "pi_2", OrderID: "order-8", Status: payment.StatusDeclined,
				DeclineCode: "insufficient_funds", Message: "Your card has insufficient funds.", AmountCents: 990},
		},
		{
			"other type",
			event("evt_3", "charge.refunded", `{"id":"ch_1","object":"charge"}`),
			stripe.WebhookEvent{ID: "evt_3", Type: "charge.refunded"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			header := stripe.SignWebhookPayload(tc.payload, whsec, time.Now())
			got, err := stripe.ParseWebhook(tc.payload, header, whsec, 5*time.Minute)
			if err != nil {
				t.Fatalf("ParseWebhook: %v", err)
			}
			if got != tc.want {
				t.Fatalf("ParseWebhook = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestParseWebhookRejects(t *testing.T) {
	t.Parallel()
	payload := event("evt_1", "payment_intent.succeeded", `{"id":"pi_1","object":"payment_intent"}`)
	tests := []struct {
		name   string
		header string
		secret string
		want   error
	}{
		{"wrong secret", stripe.SignWebhookPayload(payload, "whsec_other", time.Now()), whsec, webhook.ErrNoValidSignature},
		{"too old", stripe.SignWebhookPayload(payload, whsec, time.Now().Add(-10*time.Minute)), whsec, webhook.ErrTooOld},
		{"unsigned", "", whsec, webhook.ErrNotSigned},
		{"garbage header", "nonsense", whsec, webhook.ErrInvalidHeader},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := stripe.ParseWebhook(payload, tc.header, tc.secret, 5*time.Minute); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	tampered := append([]byte(nil), payload...)
	header := stripe.SignWebhookPayload(payload, whsec, time.Now())
	tampered[len(tampered)-3] = ' '
	if _, err := stripe.ParseWebhook(tampered, header, whsec, time.Minute); !errors.Is(err, webhook.ErrNoValidSignature) {
		t.Fatalf("tampered payload: err = %v", err)
	}
	if _, err := stripe.ParseWebhook(payload, header, "", time.Minute); err == nil {
		t.Fatal("empty secret accepted")
	}
}
