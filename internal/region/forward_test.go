package region

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/checkout-backend/checkout/internal/checkout"
)

// TestForwarder_AnswersOfTheHomeRegion: what the home region's API answers becomes what
// the domain knows: an order, a user error (a checkout.Error with its code), a refused
// token (ErrUnauthenticated), and, for a region with no address, one that does not
// answer, or one that answers 5xx or is busy, ErrRegionUnavailable. The request carries
// the caller's token and names the region that forwarded it.
func TestForwarder_AnswersOfTheHomeRegion(t *testing.T) {
	answer := ""
	status := http.StatusOK
	var got *http.Request
	home := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		w.Header().Set("Content-Type", "application/graphql-response+json")
		w.WriteHeader(status)
		w.Write([]byte(answer))
	}))
	defer home.Close()
	f := &Forwarder{Local: "us", URLs: map[string]string{"eu": home.URL, "ap": "http://127.0.0.1:1"}}
	ctx := context.Background()

	answer = `{"data":{"order":{"id":"o1","status":"PAID","totalCents":3000,"currency":"USD","createdAt":"2026-12-06T10:00:00Z",
		"updatedAt":"2026-12-06T10:00:01Z","items":[{"sku":"TEE","quantity":2,"unitPriceCents":1500}]}}}`
	o, err := f.Order(ctx, "eu", "tok", "o1")
	if err != nil || o == nil || o.Status != checkout.StatusPaid || o.TotalCents != 3000 || len(o.Items) != 1 || o.Items[0].Quantity != 2 {
		t.Fatalf("order: %+v, %v", o, err)
	}
	if got.Header.Get("Authorization") != "Bearer tok" || got.Header.Get(checkout.ForwardedHeader) != "us" {
		t.Errorf("forwarded with Authorization %q and %s %q", got.Header.Get("Authorization"), checkout.ForwardedHeader, got.Header.Get(checkout.ForwardedHeader))
	}
	answer = `{"data":{"order":null}}`
	if o, err := f.Order(ctx, "eu", "tok", "o1"); o != nil || err != nil {
		t.Errorf("not found at home: %+v, %v", o, err)
	}
	answer = `{"data":{"cancelOrder":{"order":null,"userErrors":[{"code":"ORDER_NOT_CANCELLABLE","field":["id"],"message":"an order in SHIPPED cannot be cancelled"}]}}}`
	if _, err := f.CancelOrder(ctx, "eu", "tok", "o1"); checkout.ErrorCode(err) != checkout.OrderNotCancellable {
		t.Errorf("a user error at home: %v", err)
	}
	answer = `{"errors":[{"message":"invalid or expired token","extensions":{"code":"UNAUTHENTICATED"}}],"data":{"order":null}}`
	if _, err := f.Order(ctx, "eu", "tok", "o1"); !errors.Is(err, checkout.ErrUnauthenticated) {
		t.Errorf("a refused token at home: %v", err)
	}
	for name, c := range map[string]struct {
		region string
		status int
		code   string
	}{"no address": {"sa", 200, ""}, "nobody listening": {"ap", 200, ""}, "unavailable": {"eu", 200, "SERVICE_UNAVAILABLE"},
		"5xx": {"eu", 500, "INTERNAL_SERVER_ERROR"}, "busy": {"eu", 429, "RATE_LIMITED"}} {
		status = c.status
		answer = `{"errors":[{"message":"no","extensions":{"code":"` + c.code + `"}}]}`
		if _, err := f.Order(ctx, c.region, "tok", "o1"); !errors.Is(err, checkout.ErrRegionUnavailable) {
			t.Errorf("%s: %v, want ErrRegionUnavailable", name, err)
		}
	}
}
