// Package checkout is the domain of carts, orders and their reservations: the order
// status machine, the error vocabulary and the ports (small interfaces) that adapters
// such as internal/store implement. It imports no transport, driver or SDK.
package checkout

import (
	"time"
)

// Status is an order's status.
type Status string

// Order statuses.
const (
	StatusPendingPayment Status = "PENDING_PAYMENT"
	StatusPaid           Status = "PAID"
	StatusShipped        Status = "SHIPPED"
	StatusPaymentFailed  Status = "PAYMENT_FAILED"
	StatusCancelled      Status = "CANCELLED"
	StatusExpired        Status = "EXPIRED"
)

// transitions lists the allowed moves of the status machine.
var transitions = map[Status][]Status{
	StatusPendingPayment: {StatusPaid, StatusPaymentFailed, StatusExpired, StatusCancelled},
	StatusPaid:           {StatusShipped, StatusCancelled},
}

// CanTransition reports whether an order may move from one status to another.
func CanTransition(from, to Status) bool {
	for _, s := range transitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// Effects are what a status change asks of the store besides saving the order: the
// stock move, and a refund of the payment when a paid order is cancelled.
type Effects struct {
	Stock StockMove
	// RefundReason, when set, requests a refund of the order's payment.
	RefundReason string
}

// Apply moves the order as ch says, at now: the status, the event sequence and the
// fields the change sets. An empty ch.To changes nothing. A move the status machine does
// not allow answers INVALID_TRANSITION and leaves o as it was.
func (o *Order) Apply(ch Change, now time.Time) (Effects, error) {
	if ch.To == "" {
		return Effects{}, nil
	}
	if !CanTransition(o.Status, ch.To) {
		return Effects{}, Errorf(InvalidTransition, []string{"id"}, "an order in %s cannot move to %s", o.Status, ch.To)
	}
	eff := Effects{Stock: StockMoveFor(o.Status, ch.To)}
	if o.Status == StatusPaid && ch.To == StatusCancelled {
		eff.RefundReason = "order cancelled after payment"
	}
	o.Status = ch.To
	o.UpdatedAt = now
	o.Sequence++
	if ch.TrackingNumber != nil {
		o.TrackingNumber = ch.TrackingNumber
	}
	if ch.PaymentFailureReason != nil {
		o.PaymentFailureReason = ch.PaymentFailureReason
	}
	return eff, nil
}

// Cancellable reports whether the customer (or an admin) may still cancel the order.
func (o *Order) Cancellable() bool { return CanTransition(o.Status, StatusCancelled) }

// Final reports whether no further status change can happen.
func (s Status) Final() bool { return len(transitions[s]) == 0 }

// Valid reports whether s is a known status.
func (s Status) Valid() bool {
	switch s {
	case StatusPendingPayment, StatusPaid, StatusShipped, StatusPaymentFailed, StatusCancelled, StatusExpired:
		return true
	}
	return false
}

// Order is a placed order.
type Order struct {
	ID                   string
	CustomerID           string
	Status               Status
	Items                []OrderItem
	TotalCents           int64
	Currency             string
	CreatedAt            time.Time
	UpdatedAt            time.Time
	ReservationExpiresAt *time.Time
	TrackingNumber       *string
	PaymentFailureReason *string
	// Sequence is the number of the order's latest event (1 = order.placed).
	Sequence int
}

// OrderItem is one line of an order, priced when the order was placed.
type OrderItem struct {
	SKU            string
	Quantity       int
	UnitPriceCents int64
}

// Line is a requested SKU and quantity.
type Line struct {
	SKU      string
	Quantity int
}

// Cart is a customer's cart.
type Cart struct {
	ID         string
	CustomerID string
	// OrderID is set once the cart was checked out; it then accepts no change.
	OrderID   *string
	Items     []CartItem
	CreatedAt time.Time
	UpdatedAt time.Time
}

// CartItem is a line of a cart, priced at the product's current price.
type CartItem struct {
	SKU            string
	Quantity       int
	UnitPriceCents int64
	Currency       string
}

// TotalCents is the cart's total at current prices.
func (c *Cart) TotalCents() int64 {
	var t int64
	for _, it := range c.Items {
		t += it.UnitPriceCents * int64(it.Quantity)
	}
	return t
}

// Currency is the currency of the cart's items, or "" when empty.
func (c *Cart) Currency() string {
	if len(c.Items) == 0 {
		return ""
	}
	return c.Items[0].Currency
}
