package graph_test

import (
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/testutil"
)

// TestRegions_AnOrderPlacedInARegionCarriesItInItsID: with REGIONS=eu,us, an order
// checked out in us gets an id that every region reads as living in us, and us serves
// it as its own (read back, stock reserved in its database).
func TestRegions_AnOrderPlacedInARegionCarriesItInItsID(t *testing.T) {
	t.Parallel()
	regions, err := checkout.NewRegions([]string{"eu", "us"}, "us")
	if err != nil {
		t.Fatal(err)
	}
	api := testutil.NewAPI(t, testutil.NewDB(t), testutil.APIOptions{Regions: regions})
	api.Product(t, "TEE", 1500, map[string]int{"nyc": 5})
	token := testutil.Token(t, "ann")
	r, _ := doCheckout(t, api, token, map[string]any{"idempotencyKey": "k1", "paymentToken": "tok_visa",
		"items": []map[string]any{{"sku": "TEE", "quantity": 2}}})
	o := r.Checkout.Order
	if o == nil {
		t.Fatalf("checkout: %+v", r.Checkout.UserErrors)
	}
	if v := uuid.MustParse(o.ID).Version(); v != 8 {
		t.Errorf("order id %s is version %d, want 8 (it carries its region)", o.ID, v)
	}
	eu, _ := checkout.NewRegions([]string{"eu", "us"}, "eu")
	if home, ok := eu.HomeOf(o.ID); !ok || home != "us" {
		t.Errorf("eu reads the home of %s as %q (%v), want us", o.ID, home, ok)
	}
	got := api.Do(t, token, `query($id: ID!) { order(id: $id) { id status } }`, map[string]any{"id": o.ID})
	if got.ErrorCode() != "" || !strings.Contains(string(got.Data), o.ID) {
		t.Errorf("us reads its own order back: %s %s", got.Data, got.ErrorCode())
	}
	if _, reserved := api.Stock(t, "TEE"); reserved != 2 {
		t.Errorf("%d units reserved in us, want 2", reserved)
	}
}
