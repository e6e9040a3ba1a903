package stripe_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/checkout-backend/checkout/internal/checkout"
	stripegw "github.com/checkout-backend/checkout/internal/payment/stripe"
	"github.com/checkout-backend/checkout/internal/testutil"
)

func stripeEvent(id, typ, orderID, piID string) []byte {
	return stripeEventOf(id, typ, orderID, piID, 1000, "usd")
}

func stripeEventOf(id, typ, orderID, piID string, amount int64, currency string) []byte {
	obj := fmt.Sprintf(`{"id":%q,"object":"payment_intent","amount":%d,"currency":%q,"status":"succeeded","metadata":{"order_id":%q}}`, piID, amount, currency, orderID)
	if typ == "payment_intent.payment_failed" {
		obj = fmt.Sprintf(`{"id":%q,"object":"payment_intent","amount":%d,"currency":%q,"status":"requires_payment_method","metadata":{"order_id":%q},"last_payment_error":{"type":"card_error","code":"card_declined","decline_code":"insufficient_funds","message":"Your card has insufficient funds."}}`, piID, amount, currency, orderID)
	}
	return []byte(fmt.Sprintf(`{"id":%q,"object":"event","api_version":"2023-10-16","type":%q,"created":%d,"data":{"object":%s}}`, id, typ, time.Now().Unix(), obj))
}

func post(h http.Handler, body []byte, sig string) int {
	req := httptest.NewRequest(http.MethodPost, "/webhooks/stripe", bytes.NewReader(body))
	req.Header.Set("Stripe-Signature", sig)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code
}

func line(sku string, q int) checkout.Line { return checkout.Line{SKU: sku, Quantity: q} }

func TestStripeWebhook(t *testing.T) {
	t.Parallel()
	s := testutil.NewStack(t, testutil.StackOptions{NoWorkers: true, NoRelay: true})
	s.Product(t, "WH", 1000, map[string]int{"w": 5})
	h := &stripegw.WebhookHandler{Payments: s.Payments, Secret: whsec, Tolerance: 5 * time.Minute,
		Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))}
	ctx := context.Background()
	// paid: the worker's charge call answered requires_action with intent pi_ok (the
	// intent id is stored). failed: the call's answer was lost; only the attempt (amount
	// and currency) is stored. other: an order no charge was attempted for.
	paid := s.Checkout(t, "c", "k1", "tok_threeDSecure2Required", line("WH", 1))
	failed := s.Checkout(t, "c", "k2", "tok_threeDSecure2Required", line("WH", 1))
	other := s.Checkout(t, "c", "k3", "tok_threeDSecure2Required", line("WH", 1))
	if _, _, err := s.Payments.Settle(ctx, "payment", "evt-placed-1", checkout.PaymentReport{OrderID: paid, Provider: stripegw.ProviderName,
		ProviderPaymentID: "pi_ok", AmountCents: 1000, Currency: "USD", Result: checkout.PaymentResult{Status: checkout.PaymentRequiresAction}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Payments.RecordAttempt(ctx, failed, stripegw.ProviderName, 1000, "USD"); err != nil {
		t.Fatal(err)
	}

	t.Run("BadSignature_400_NothingChanges", func(t *testing.T) {
		body := stripeEvent("evt_1", "payment_intent.succeeded", paid, "pi_1")
		if code := post(h, body, stripegw.SignWebhookPayload(body, "whsec_wrong", time.Now())); code != 400 {
			t.Fatalf("wrong secret: %d", code)
		}
		if code := post(h, body, "t=1,v1=deadbeef"); code != 400 {
			t.Fatalf("garbage signature: %d", code)
		}
		if code := post(h, body, stripegw.SignWebhookPayload(body, whsec, time.Now().Add(-time.Hour))); code != 400 {
			t.Fatalf("replayed after the tolerance: %d", code)
		}
		tampered := bytes.Replace(body, []byte("1000"), []byte("1"), 1)
		if code := post(h, tampered, stripegw.SignWebhookPayload(body, whsec, time.Now())); code != 400 {
			t.Fatalf("tampered body: %d", code)
		}
		if o, _ := s.Orders.Order(t.Context(), paid); o.Status != checkout.StatusPendingPayment {
			t.Fatalf("order moved to %s", o.Status)
		}
		if n := s.Count(t, "SELECT count(*) FROM inbox WHERE consumer = ?", stripegw.WebhookConsumer); n != 0 {
			t.Fatalf("inbox %d", n)
		}
	})
	t.Run("AmountOrCurrencyNotTheCharge_Ignored", func(t *testing.T) {
		// A 0.50 EUR intent naming another order (by its stored intent id, or by
		// metadata) never pays it.
		for i, body := range [][]byte{
			stripeEventOf("evt_cheap1", "payment_intent.succeeded", paid, "pi_ok", 50, "eur"),
			stripeEventOf("evt_cheap2", "payment_intent.succeeded", failed, "pi_cheap", 50, "eur"),
			stripeEventOf("evt_cheap3", "payment_intent.succeeded", failed, "pi_cheap", 1000, "eur"),
		} {
			if code := post(h, body, stripegw.SignWebhookPayload(body, whsec, time.Now())); code != 200 {
				t.Fatalf("event %d: %d", i, code)
			}
		}
		for _, id := range []string{paid, failed} {
			if o, _ := s.Orders.Order(t.Context(), id); o.Status != checkout.StatusPendingPayment {
				t.Fatalf("order moved to %s by an intent of another amount", o.Status)
			}
		}
	})
	t.Run("OrderWithoutAttempt_Ignored", func(t *testing.T) {
		body := stripeEvent("evt_other", "payment_intent.succeeded", other, "pi_other")
		if code := post(h, body, stripegw.SignWebhookPayload(body, whsec, time.Now())); code != 200 {
			t.Fatalf("code %d", code)
		}
		if o, _ := s.Orders.Order(t.Context(), other); o.Status != checkout.StatusPendingPayment {
			t.Fatalf("an intent for an order never charged moved it to %s", o.Status)
		}
	})
	t.Run("Succeeded_Paid_ReplayChangesNothing", func(t *testing.T) {
		body := stripeEvent("evt_ok", "payment_intent.succeeded", paid, "pi_ok")
		for i := 0; i < 3; i++ {
			if code := post(h, body, stripegw.SignWebhookPayload(body, whsec, time.Now())); code != 200 {
				t.Fatalf("delivery %d: %d", i, code)
			}
		}
		if o, _ := s.Orders.Order(t.Context(), paid); o.Status != checkout.StatusPaid || o.Sequence != 2 {
			t.Fatalf("order %s seq %d, want PAID seq 2", o.Status, o.Sequence)
		}
		if n := s.Count(t, "SELECT count(*) FROM outbox WHERE type = 'order.paid'"); n != 1 {
			t.Fatalf("%d order.paid events", n)
		}
	})
	t.Run("PaymentFailed_ReleasesStock", func(t *testing.T) {
		body := stripeEvent("evt_fail", "payment_intent.payment_failed", failed, "pi_fail")
		if code := post(h, body, stripegw.SignWebhookPayload(body, whsec, time.Now())); code != 200 {
			t.Fatalf("code %d", code)
		}
		o, _ := s.Orders.Order(t.Context(), failed)
		if o.Status != checkout.StatusPaymentFailed || o.PaymentFailureReason == nil || *o.PaymentFailureReason != "insufficient_funds" {
			t.Fatalf("order %+v", o)
		}
		// The paid unit is sold, the failed one released, other's still held.
		if onHand, reserved := s.Stock(t, "WH"); onHand != 4 || reserved != 1 {
			t.Fatalf("stock %d/%d, want 4/1", onHand, reserved)
		}
		if p, _ := s.Payments.Payment(t.Context(), failed); p == nil || p.ProviderPaymentID == nil || *p.ProviderPaymentID != "pi_fail" || p.Status != checkout.PaymentDeclined {
			t.Fatalf("payment of the failed order %+v", p)
		}
	})
}
