package workers_test

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/checkout-backend/checkout/internal/checkout"
	stripegw "github.com/checkout-backend/checkout/internal/payment/stripe"
	"github.com/checkout-backend/checkout/internal/testutil"
	"github.com/checkout-backend/checkout/workers"
)

const whsec = "whsec_test_secret"

func stripeEvent(id, typ, orderID, piID string) []byte {
	obj := fmt.Sprintf(`{"id":%q,"object":"payment_intent","amount":1000,"currency":"usd","status":"succeeded","metadata":{"order_id":%q}}`, piID, orderID)
	if typ == "payment_intent.payment_failed" {
		obj = fmt.Sprintf(`{"id":%q,"object":"payment_intent","amount":1000,"currency":"usd","status":"requires_payment_method","metadata":{"order_id":%q},"last_payment_error":{"type":"card_error","code":"card_declined","decline_code":"insufficient_funds","message":"Your card has insufficient funds."}}`, piID, orderID)
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

func TestStripeWebhook(t *testing.T) {
	t.Parallel()
	s := testutil.NewStack(t, testutil.StackOptions{NoWorkers: true, NoRelay: true})
	s.Product(t, "WH", 1000, map[string]int{"w": 5})
	h := &workers.StripeWebhook{Payments: s.Payments, Secret: whsec, Tolerance: 5 * time.Minute, Logger: nil}
	h.Logger = testLogger()
	paid := s.Checkout(t, "c", "k1", "tok_threeDSecure2Required", line("WH", 1))
	failed := s.Checkout(t, "c", "k2", "tok_threeDSecure2Required", line("WH", 1))

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
		if n := s.Count(t, "SELECT count(*) FROM inbox"); n != 0 {
			t.Fatalf("inbox %d", n)
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
		if onHand, reserved := s.Stock(t, "WH"); onHand != 4 || reserved != 0 {
			t.Fatalf("stock %d/%d, want 4/0", onHand, reserved)
		}
	})
}
