package stripe_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/checkout-backend/checkout/internal/payment"
	"github.com/checkout-backend/checkout/internal/payment/resilience"
	"github.com/checkout-backend/checkout/internal/payment/stripe"
	"github.com/checkout-backend/checkout/internal/testutil"
)

const fakeKey = "sk_test_fake"

// newFake is testutil's fake of Stripe's wire protocol; script, if not nil, may answer
// request n itself.
func newFake(t *testing.T, script func(n int, w http.ResponseWriter, r *http.Request) bool) *testutil.FakeStripe {
	t.Helper()
	return testutil.NewFakeStripe(t, script)
}

var (
	stripeError = testutil.StripeError
	writeJSON   = testutil.WriteStripeJSON
)

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
func fastResilient(g payment.Gateway, o resilience.Options) *resilience.Gateway {
	o.InitialInterval = 5 * time.Millisecond
	o.MaxInterval = 20 * time.Millisecond
	o.MaxElapsedTime = 3 * time.Second
	return resilience.New(g, o)
}
