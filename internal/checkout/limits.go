package checkout

import (
	"strconv"
	"time"
)

// PurchaseLimits bound what one customer may hold without paying, so that no customer
// can take a scarce SKU's whole stock, or hold it unpaid, for everyone else: a flash
// sale's fairness. The units of one product per customer are the product's own limit
// (catalog: maxPerCustomer); these are the service-wide ones. Zero turns a bound off.
type PurchaseLimits struct {
	// MaxUnpaidOrders caps the customer's orders awaiting payment (PENDING_PAYMENT).
	MaxUnpaidOrders int
	// MaxFailedPayments caps the customer's failed payments (PAYMENT_FAILED orders)
	// within FailedPaymentWindow: past it the customer's checkouts are refused until the
	// oldest failure leaves the window (card testing tries one card after another).
	MaxFailedPayments   int
	FailedPaymentWindow time.Duration
}

// Bounds are the bounds of one checkout placed at now.
func (l PurchaseLimits) Bounds(now time.Time) CustomerBounds {
	b := CustomerBounds{MaxUnpaidOrders: l.MaxUnpaidOrders, MaxFailedPayments: l.MaxFailedPayments}
	if b.MaxFailedPayments > 0 {
		b.FailedSince = now.Add(-l.FailedPaymentWindow)
	}
	return b
}

// CustomerBounds are the per-customer bounds a store enforces on one checkout, in its
// transaction and under a lock on the customer (PlaceOrder.Bounds). Zero: no bound.
type CustomerBounds struct {
	MaxUnpaidOrders   int
	MaxFailedPayments int
	// FailedSince starts the window in which failed payments count.
	FailedSince time.Time
}

// Any reports whether the checkout has a service-wide bound to check.
func (b CustomerBounds) Any() bool { return b.MaxUnpaidOrders > 0 || b.MaxFailedPayments > 0 }

// Standing is what a customer holds when its checkout is decided, read by the store
// under the customer's lock, so that concurrent checkouts of one customer are decided
// one after the other.
type Standing struct {
	// Unpaid counts the customer's PENDING_PAYMENT orders.
	Unpaid int
	// FailedPayments counts its PAYMENT_FAILED orders since CustomerBounds.FailedSince.
	FailedPayments int
	// Held is, per SKU with a per-customer limit, the units in the customer's
	// PENDING_PAYMENT, PAID and SHIPPED orders (not those given back: failed,
	// cancelled, expired).
	Held map[string]int
}

// Take adds a placed order to the standing, for a later checkout of the same customer
// decided in the same transaction.
func (s *Standing) Take(lines []Line) {
	s.Unpaid++
	if s.Held == nil {
		s.Held = map[string]int{}
	}
	for _, l := range lines {
		s.Held[l.SKU] += l.Quantity
	}
}

// CheckStanding decides whether a customer with standing st may place an order of lines:
// failed payments first (a card tester is told that, whatever it asks), then unpaid
// orders, then each line against its product's limit (limits: units per customer of the
// SKUs that have one). field is the input path of the lines; fromCart reports a line's
// error on the cart as a whole (its lines are not input), as OUT_OF_STOCK does.
func CheckStanding(b CustomerBounds, st Standing, lines []Line, limits map[string]int, field []string, fromCart bool) error {
	if b.MaxFailedPayments > 0 && st.FailedPayments >= b.MaxFailedPayments {
		return Errorf(TooManyFailedPayments, []string{"input", "paymentToken"},
			"too many failed payments (%d); checkout is paused for this account, try again later", st.FailedPayments)
	}
	if b.MaxUnpaidOrders > 0 && st.Unpaid >= b.MaxUnpaidOrders {
		return Errorf(TooManyUnpaidOrders, []string{"input"},
			"at most %d orders may await payment at once; pay or cancel one first", b.MaxUnpaidOrders)
	}
	for i, l := range lines {
		max, ok := limits[l.SKU]
		if !ok || max <= 0 {
			continue
		}
		if held := st.Held[l.SKU]; held+l.Quantity > max {
			f := field
			if !fromCart {
				f = append(append([]string{}, field...), strconv.Itoa(i), "quantity")
			}
			return Errorf(PurchaseLimitExceeded, f, "at most %d of %s per customer; %d already in your orders, %d requested",
				max, l.SKU, held, l.Quantity)
		}
	}
	return nil
}
