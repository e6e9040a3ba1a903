package checkout

import (
	"slices"
	"testing"
	"time"
)

// TestCheckStanding_M4 is the decision the store makes under the customer's lock (M4):
// failed payments first, then unpaid orders, then each line against its product's limit,
// the line's input path named (the cart's for a cart).
func TestCheckStanding_M4(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	b := PurchaseLimits{MaxUnpaidOrders: 3, MaxFailedPayments: 5, FailedPaymentWindow: time.Hour}.Bounds(now)
	if !b.FailedSince.Equal(now.Add(-time.Hour)) || !b.Any() {
		t.Fatalf("bounds %+v", b)
	}
	limits := map[string]int{"LTD": 2}
	lines := []Line{{"TEE", 40}, {"LTD", 2}}
	items := []string{"input", "items"}
	for _, c := range []struct {
		name  string
		st    Standing
		lines []Line
		cart  bool
		code  Code
		field []string
	}{
		{"fresh customer", Standing{}, lines, false, "", nil},
		{"failed payments win", Standing{FailedPayments: 5, Unpaid: 3, Held: map[string]int{"LTD": 2}}, lines, false, TooManyFailedPayments, []string{"input", "paymentToken"}},
		{"unpaid cap", Standing{Unpaid: 3}, lines, false, TooManyUnpaidOrders, []string{"input"}},
		{"limit over two orders", Standing{Held: map[string]int{"LTD": 1}}, lines, false, PurchaseLimitExceeded, []string{"input", "items", "1", "quantity"}},
		{"limit in one line", Standing{}, []Line{{"LTD", 50}}, false, PurchaseLimitExceeded, []string{"input", "items", "0", "quantity"}},
		{"limit on a cart", Standing{}, []Line{{"LTD", 3}}, true, PurchaseLimitExceeded, items},
		{"unlimited SKU", Standing{Held: map[string]int{"TEE": 1000}}, []Line{{"TEE", 10_000}}, false, "", nil},
	} {
		err := CheckStanding(b, c.st, c.lines, limits, items, c.cart)
		if ErrorCode(err) != c.code {
			t.Errorf("%s: %v, want %q", c.name, err, c.code)
			continue
		}
		if e, ok := AsError(err); ok && !slices.Equal(e.Field, c.field) {
			t.Errorf("%s: field %v, want %v", c.name, e.Field, c.field)
		}
	}
	// Off when zero: nothing service-wide is checked.
	if (PurchaseLimits{}).Bounds(now).Any() {
		t.Error("zero limits are bounds")
	}
	var st Standing
	st.Take(lines)
	if st.Unpaid != 1 || st.Held["LTD"] != 2 {
		t.Fatalf("Take: %+v", st)
	}
}
