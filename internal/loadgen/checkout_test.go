package loadgen_test

import (
	"testing"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/checkout-backend/checkout/internal/loadgen"
)

// A buyer's reading of each kind of answer: what the chaos runs count as acknowledged,
// sold out, or failed (and why).
func TestReadCheckout_EachKindOfAnswer(t *testing.T) {
	for _, c := range []struct {
		name string
		res  vegeta.Result
		want loadgen.Checkout
	}{
		{"order", vegeta.Result{Code: 200, Body: []byte(`{"data":{"checkout":{"order":{"id":"o1"},"userErrors":[]}}}`)}, loadgen.Checkout{OrderID: "o1"}},
		{"sold out", vegeta.Result{Code: 200, Body: []byte(`{"data":{"checkout":{"order":null,"userErrors":[{"code":"OUT_OF_STOCK"}]}}}`)}, loadgen.Checkout{OutOfStock: true}},
		{"another userError", vegeta.Result{Code: 200, Body: []byte(`{"data":{"checkout":{"order":null,"userErrors":[{"code":"PURCHASE_LIMIT_EXCEEDED"}]}}}`)}, loadgen.Checkout{Err: "PURCHASE_LIMIT_EXCEEDED"}},
		{"shed", vegeta.Result{Code: 503, Body: []byte(`{"errors":[{"message":"busy","extensions":{"code":"SERVICE_UNAVAILABLE"}}]}`)}, loadgen.Checkout{Err: "SERVICE_UNAVAILABLE"}},
		{"error without code", vegeta.Result{Code: 200, Body: []byte(`{"errors":[{"message":"boom"}]}`)}, loadgen.Checkout{Err: "boom"}},
		{"not JSON", vegeta.Result{Code: 502, Body: []byte(`<html>bad gateway</html>`)}, loadgen.Checkout{Err: "status 502"}},
		{"no answer", vegeta.Result{Error: "connection refused"}, loadgen.Checkout{Err: "connection refused"}},
	} {
		if got := loadgen.ReadCheckout(&c.res); got != c.want {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
	}
}
