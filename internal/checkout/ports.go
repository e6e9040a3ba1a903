package checkout

import (
	"context"
	"time"
)

// Actor is who calls: a customer, possibly with the admin or partner role.
type Actor struct {
	CustomerID string
	Admin      bool
	Partner    bool
}

// CanReadAny reports whether the actor may read any customer's order.
func (a Actor) CanReadAny() bool { return a.Admin || a.Partner }

// RequireAdmin answers ErrUnauthenticated without a caller and ErrForbidden for a
// caller without the admin role. The domain services call it: authorization has one
// place, the service of each use case.
func RequireAdmin(a Actor) error {
	switch {
	case a.CustomerID == "":
		return ErrUnauthenticated
	case !a.Admin:
		return ErrForbidden
	}
	return nil
}

// PlaceOrder is what the store needs to place an order in one transaction.
type PlaceOrder struct {
	OrderID        string
	CustomerID     string
	IdempotencyKey string
	RequestHash    []byte
	// Exactly one of CartID and Lines.
	CartID       string
	Lines        []Line
	PaymentToken string
	Now          time.Time
	ExpiresAt    time.Time
	// Bounds are the customer's service-wide bounds; the products' own limits are the
	// store's to read. The store checks both under a lock on the customer.
	Bounds CustomerBounds
}

// OrderPage is a page of orders.
type OrderPage struct {
	Orders  []Order
	HasNext bool
}

// Change describes a status change the store applies in one transaction with its event;
// an empty To changes nothing.
type Change struct {
	To                   Status
	TrackingNumber       *string
	PaymentFailureReason *string
}

// OrderStore is the persistence port of orders.
type OrderStore interface {
	// PlaceOrder reserves every line and writes the order and its order.placed event in
	// one transaction; replay is true when the idempotency key returned an earlier order.
	PlaceOrder(ctx context.Context, p PlaceOrder) (o Order, replay bool, err error)
	Order(ctx context.Context, id string) (*Order, error)
	Orders(ctx context.Context, ids []string) (map[string]Order, error)
	CustomerOrders(ctx context.Context, customerID string, first int, after *PageCursor) (OrderPage, error)
	// Transition loads the order under a row lock, lets decide choose the change (or
	// return an error), applies it with Order.Apply, makes the stock move and the refund
	// request Apply asks for, saves the order and writes its event, in one transaction.
	Transition(ctx context.Context, id string, decide func(o *Order) (Change, error)) (Order, error)
	// ExpiredOrders lists up to limit unpaid orders whose reservation ran out before now,
	// oldest first.
	ExpiredOrders(ctx context.Context, now time.Time, limit int) ([]string, error)
}

// CartStore is the persistence port of carts.
type CartStore interface {
	CreateCart(ctx context.Context, id, customerID string, now time.Time) (Cart, error)
	Cart(ctx context.Context, id string) (*Cart, error)
	// SetCartItem sets (add=false) or adds to (add=true) a line; quantity 0 removes it.
	SetCartItem(ctx context.Context, cartID, customerID, sku string, quantity int, add bool, maxQuantity int) (Cart, error)
}

// PageCursor is a position in a customer's order list (newest first).
type PageCursor struct {
	CreatedAt time.Time
	ID        string
}

// StatusFeed delivers an order's status changes to live subscribers.
type StatusFeed interface {
	// Subscribe returns the order's updates until ctx ends; the channel is closed then,
	// or when the subscriber falls behind (reason then says why).
	Subscribe(ctx context.Context, orderID string) (updates <-chan Order, reason func() error, err error)
}
