package store

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/uptrace/bun"

	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/event"
	"github.com/checkout-backend/checkout/outbox"
)

// Orders implements checkout.OrderStore: the checkout transaction and every status
// change, each with its outbox event.
type Orders struct {
	db       *bun.DB
	reserver Reserver
	now      func() time.Time
}

// NewOrders returns the order adapter reserving stock with r.
func NewOrders(db *bun.DB, r Reserver, now func() time.Time) *Orders {
	if r == nil {
		r = LockingReserver{}
	}
	if now == nil {
		now = time.Now
	}
	return &Orders{db: db, reserver: r, now: now}
}

var _ checkout.OrderStore = (*Orders)(nil)

type orderRow struct {
	ID                   string     `bun:"id"`
	CustomerID           string     `bun:"customer_id"`
	Status               string     `bun:"status"`
	TotalCents           int64      `bun:"total_cents"`
	Currency             string     `bun:"currency"`
	ReservationExpiresAt *time.Time `bun:"reservation_expires_at"`
	TrackingNumber       *string    `bun:"tracking_number"`
	PaymentFailureReason *string    `bun:"payment_failure_reason"`
	EventSeq             int        `bun:"event_seq"`
	CreatedAt            time.Time  `bun:"created_at"`
	UpdatedAt            time.Time  `bun:"updated_at"`
}

const orderCols = `id, customer_id, status, total_cents, currency, reservation_expires_at,
	tracking_number, payment_failure_reason, event_seq, created_at, updated_at`

func (r orderRow) order() checkout.Order {
	return checkout.Order{ID: r.ID, CustomerID: r.CustomerID, Status: checkout.Status(r.Status),
		TotalCents: r.TotalCents, Currency: r.Currency, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt,
		ReservationExpiresAt: r.ReservationExpiresAt, TrackingNumber: r.TrackingNumber,
		PaymentFailureReason: r.PaymentFailureReason, Sequence: r.EventSeq, Items: []checkout.OrderItem{}}
}

type itemRow struct {
	OrderID        string `bun:"order_id"`
	SKU            string `bun:"sku"`
	Quantity       int    `bun:"quantity"`
	UnitPriceCents int64  `bun:"unit_price_cents"`
}

type priceRow struct {
	SKU        string `bun:"sku"`
	PriceCents int64  `bun:"price_cents"`
	Currency   string `bun:"currency"`
}

// PlaceOrder is the checkout transaction: idempotency key, cart, prices, reservation,
// order, items and the order.placed event commit together or not at all.
func (s *Orders) PlaceOrder(ctx context.Context, p checkout.PlaceOrder) (checkout.Order, bool, error) {
	var out checkout.Order
	var replay bool
	now := p.Now.Truncate(time.Microsecond)
	err := InTx(ctx, s.db, func(ctx context.Context, tx bun.Tx) error {
		replay = false
		// Calls with one (customer, key) queue here, so concurrent duplicates see the
		// first one's committed key instead of racing it.
		if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", fmt.Sprintf("%d:%s:%s", len(p.CustomerID), p.CustomerID, p.IdempotencyKey)); err != nil {
			return fmt.Errorf("idempotency lock: %w", err)
		}
		var key struct {
			RequestHash []byte `bun:"request_hash"`
			OrderID     string `bun:"order_id"`
		}
		err := tx.NewRaw("SELECT request_hash, order_id FROM idempotency_keys WHERE customer_id = ? AND key = ?", p.CustomerID, p.IdempotencyKey).Scan(ctx, &key)
		switch {
		case err == nil:
			if !bytes.Equal(key.RequestHash, p.RequestHash) {
				return checkout.Errorf(checkout.IdempotencyKeyReused, []string{"input", "idempotencyKey"}, "this idempotencyKey was used with other input; use a new key for a new checkout")
			}
			o, err := loadOrder(ctx, tx, key.OrderID, false)
			if err != nil {
				return err
			}
			out, replay = *o, true
			return nil
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("idempotency key: %w", err)
		}

		lines, field := p.Lines, []string{"input", "items"}
		price := map[string]priceRow{}
		if p.CartID != "" {
			field = []string{"input", "cartId"}
			cart, err := loadCart(ctx, tx, p.CartID, true)
			if err != nil {
				return err
			}
			if cart == nil || cart.CustomerID != p.CustomerID {
				return checkout.Errorf(checkout.CartNotFound, field, "cart not found")
			}
			if cart.OrderID != nil {
				return checkout.Errorf(checkout.CartNotFound, field, "cart was already checked out")
			}
			if len(cart.Items) == 0 {
				return checkout.Errorf(checkout.CartEmpty, field, "cart is empty")
			}
			// The cart was read with its current prices: no second read.
			lines = nil
			for _, it := range cart.Items {
				lines = append(lines, checkout.Line{SKU: it.SKU, Quantity: it.Quantity})
				price[it.SKU] = priceRow{SKU: it.SKU, PriceCents: it.UnitPriceCents, Currency: it.Currency}
			}
		} else {
			skus := make([]string, len(lines))
			for i, l := range lines {
				skus[i] = l.SKU
			}
			var prices []priceRow
			if err := tx.NewRaw("SELECT sku, price_cents, currency FROM products WHERE sku IN (?)", bun.In(skus)).Scan(ctx, &prices); err != nil {
				return fmt.Errorf("prices: %w", err)
			}
			for _, pr := range prices {
				price[pr.SKU] = pr
			}
		}
		var total int64
		currency := ""
		items := make([]checkout.OrderItem, len(lines))
		for i, l := range lines {
			pr, ok := price[l.SKU]
			f := append(append([]string{}, field...), strconv.Itoa(i), "sku")
			if p.CartID != "" {
				f = field
			}
			if !ok {
				return checkout.Errorf(checkout.UnknownSKU, f, "unknown sku %q", l.SKU)
			}
			if currency == "" {
				currency = pr.Currency
			} else if pr.Currency != currency {
				return checkout.Errorf(checkout.InvalidInput, f, "all items of an order must share one currency; %s is in %s, not %s", l.SKU, pr.Currency, currency)
			}
			items[i] = checkout.OrderItem{SKU: l.SKU, Quantity: l.Quantity, UnitPriceCents: pr.PriceCents}
			total += pr.PriceCents * int64(l.Quantity)
		}

		expires := p.ExpiresAt.Truncate(time.Microsecond)
		o := checkout.Order{ID: p.OrderID, CustomerID: p.CustomerID, Status: checkout.StatusPendingPayment,
			Items: items, TotalCents: total, Currency: currency, CreatedAt: now, UpdatedAt: now,
			ReservationExpiresAt: &expires, Sequence: 1}
		if _, err := tx.ExecContext(ctx, `INSERT INTO orders (id, customer_id, status, total_cents, currency,
			payment_token, reservation_expires_at, event_seq, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?)`,
			o.ID, o.CustomerID, o.Status, o.TotalCents, o.Currency, p.PaymentToken, expires, now, now); err != nil {
			return fmt.Errorf("insert order: %w", err)
		}
		lineNo, isku, qty, unit := make([]int, len(items)), make([]string, len(items)), make([]int, len(items)), make([]int64, len(items))
		for i, it := range items {
			lineNo[i], isku[i], qty[i], unit[i] = i+1, it.SKU, it.Quantity, it.UnitPriceCents
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO order_items (order_id, line_no, sku, quantity, unit_price_cents)
			SELECT ?, v.n, v.sku, v.q, v.p FROM unnest(?::int[], ?::text[], ?::int[], ?::bigint[]) AS v(n, sku, q, p)`,
			o.ID, pgArray(lineNo), pgArray(isku), pgArray(qty), pgArray(unit)); err != nil {
			return fmt.Errorf("insert order items: %w", err)
		}
		// The row locks are taken last, so they are held for the shortest time.
		if err := s.reserver.Reserve(ctx, tx, o.ID, lines, field, expires); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO idempotency_keys (customer_id, key, request_hash, order_id, created_at) VALUES (?, ?, ?, ?, ?)",
			p.CustomerID, p.IdempotencyKey, p.RequestHash, o.ID, now); err != nil {
			return fmt.Errorf("insert idempotency key: %w", err)
		}
		if p.CartID != "" {
			if _, err := tx.ExecContext(ctx, "UPDATE carts SET order_id = ?, updated_at = ? WHERE id = ?", o.ID, now, p.CartID); err != nil {
				return fmt.Errorf("close cart: %w", err)
			}
		}
		if err := writeOrderEvent(ctx, tx, o, false, p.CartID); err != nil { // analytics (issue 14): the cart
			return err
		}
		out = o
		return nil
	})
	if err != nil {
		return checkout.Order{}, false, err
	}
	return out, replay, nil
}

func writeOrderEvent(ctx context.Context, tx bun.IDB, o checkout.Order, refund bool, cartID string) error {
	typ := event.TypeForStatus(string(o.Status))
	p := event.OrderPayload{
		Order: event.OrderData{ID: o.ID, Status: string(o.Status), Sequence: o.Sequence, TotalCents: o.TotalCents,
			Currency: o.Currency, UpdatedAt: o.UpdatedAt, TrackingNumber: o.TrackingNumber, PaymentFailureReason: o.PaymentFailureReason},
		CustomerID: o.CustomerID,
		Refund:     refund,
	}
	// --- analytics (issue 14): order.placed carries its lines and its cart ---
	if typ == event.OrderPlaced {
		p.CartID = cartID
		for _, it := range o.Items {
			p.Order.Items = append(p.Order.Items, event.OrderItemData{SKU: it.SKU, Quantity: it.Quantity, UnitPriceCents: it.UnitPriceCents})
		}
	}
	// --- end analytics ---
	env, err := event.New(typ, o.ID, o.UpdatedAt, p)
	if err != nil {
		return err
	}
	return outbox.Insert(ctx, tx, env)
}

func loadOrder(ctx context.Context, db bun.IDB, id string, lock bool) (*checkout.Order, error) {
	var r orderRow
	q := "SELECT " + orderCols + " FROM orders WHERE id = ?"
	if lock {
		q += " FOR UPDATE"
	}
	err := db.NewRaw(q, id).Scan(ctx, &r)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("order: %w", err)
	}
	o := r.order()
	if err := attachItems(ctx, db, []*checkout.Order{&o}); err != nil {
		return nil, err
	}
	return &o, nil
}

func attachItems(ctx context.Context, db bun.IDB, orders []*checkout.Order) error {
	if len(orders) == 0 {
		return nil
	}
	ids := make([]string, len(orders))
	byID := map[string]*checkout.Order{}
	for i, o := range orders {
		ids[i] = o.ID
		byID[o.ID] = o
	}
	var items []itemRow
	if err := db.NewRaw(`SELECT order_id, sku, quantity, unit_price_cents FROM order_items
		WHERE order_id IN (?) ORDER BY order_id, line_no`, bun.In(ids)).Scan(ctx, &items); err != nil {
		return fmt.Errorf("order items: %w", err)
	}
	for _, it := range items {
		o := byID[it.OrderID]
		o.Items = append(o.Items, checkout.OrderItem{SKU: it.SKU, Quantity: it.Quantity, UnitPriceCents: it.UnitPriceCents})
	}
	return nil
}

// Order loads an order with its items, or nil.
func (s *Orders) Order(ctx context.Context, id string) (*checkout.Order, error) {
	return loadOrder(ctx, s.db, id, false)
}

// Orders loads many orders with their items in two queries.
func (s *Orders) Orders(ctx context.Context, ids []string) (map[string]checkout.Order, error) {
	out := map[string]checkout.Order{}
	if len(ids) == 0 {
		return out, nil
	}
	var rows []orderRow
	if err := s.db.NewRaw("SELECT "+orderCols+" FROM orders WHERE id IN (?)", bun.In(ids)).Scan(ctx, &rows); err != nil {
		return nil, fmt.Errorf("orders: %w", err)
	}
	ptrs := make([]*checkout.Order, len(rows))
	for i, r := range rows {
		o := r.order()
		ptrs[i] = &o
	}
	if err := attachItems(ctx, s.db, ptrs); err != nil {
		return nil, err
	}
	for _, o := range ptrs {
		out[o.ID] = *o
	}
	return out, nil
}

// CustomerOrders pages a customer's orders, newest first, with their items.
func (s *Orders) CustomerOrders(ctx context.Context, customerID string, first int, after *checkout.PageCursor) (checkout.OrderPage, error) {
	var rows []orderRow
	q := s.db.NewRaw("SELECT "+orderCols+" FROM orders WHERE customer_id = ? ORDER BY created_at DESC, id DESC LIMIT ?", customerID, first+1)
	if after != nil {
		q = s.db.NewRaw("SELECT "+orderCols+` FROM orders WHERE customer_id = ? AND (created_at, id) < (?, ?::uuid)
			ORDER BY created_at DESC, id DESC LIMIT ?`, customerID, after.CreatedAt, after.ID, first+1)
	}
	if err := q.Scan(ctx, &rows); err != nil {
		return checkout.OrderPage{}, fmt.Errorf("customer orders: %w", err)
	}
	page := checkout.OrderPage{HasNext: len(rows) > first}
	if page.HasNext {
		rows = rows[:first]
	}
	ptrs := make([]*checkout.Order, len(rows))
	for i, r := range rows {
		o := r.order()
		ptrs[i] = &o
	}
	if err := attachItems(ctx, s.db, ptrs); err != nil {
		return checkout.OrderPage{}, err
	}
	page.Orders = make([]checkout.Order, len(ptrs))
	for i, o := range ptrs {
		page.Orders[i] = *o
	}
	return page, nil
}

// Transition applies one status change under the order's row lock: the stock moves as
// the change requires (sell, release or restock) and the event is written, all in one
// transaction.
func (s *Orders) Transition(ctx context.Context, id string, decide func(o *checkout.Order) (checkout.Change, error)) (checkout.Order, error) {
	var out checkout.Order
	err := InTx(ctx, s.db, func(ctx context.Context, tx bun.Tx) error {
		o, err := loadOrder(ctx, tx, id, true)
		if err != nil {
			return err
		}
		if o == nil {
			return checkout.Errorf(checkout.NotFound, []string{"id"}, "order not found")
		}
		ch, err := decide(o)
		if err != nil {
			return err
		}
		if ch.To == "" {
			out = *o // nothing to change
			return nil
		}
		if !checkout.CanTransition(o.Status, ch.To) {
			return checkout.Errorf(checkout.InvalidTransition, []string{"id"}, "an order in %s cannot move to %s", o.Status, ch.To)
		}
		switch {
		case o.Status == checkout.StatusPendingPayment && ch.To == checkout.StatusPaid:
			err = s.reserver.Sell(ctx, tx, o.ID)
		case o.Status == checkout.StatusPendingPayment:
			err = s.reserver.Release(ctx, tx, o.ID)
		case o.Status == checkout.StatusPaid && ch.To == checkout.StatusCancelled:
			err = s.reserver.Restock(ctx, tx, o.ID)
		}
		if err != nil {
			return err
		}
		o.Status = ch.To
		o.UpdatedAt = s.now().UTC().Truncate(time.Microsecond)
		o.Sequence++
		if ch.TrackingNumber != nil {
			o.TrackingNumber = ch.TrackingNumber
		}
		if ch.PaymentFailureReason != nil {
			o.PaymentFailureReason = ch.PaymentFailureReason
		}
		if _, err := tx.ExecContext(ctx, `UPDATE orders SET status = ?, updated_at = ?, event_seq = ?,
			tracking_number = ?, payment_failure_reason = ?,
			payment_token = CASE WHEN ? = 'PENDING_PAYMENT' THEN payment_token END
			WHERE id = ?`, o.Status, o.UpdatedAt, o.Sequence, o.TrackingNumber, o.PaymentFailureReason, o.Status, o.ID); err != nil {
			return fmt.Errorf("update order: %w", err)
		}
		if err := writeOrderEvent(ctx, tx, *o, ch.Refund, ""); err != nil {
			return err
		}
		if ch.Refund {
			if err := RequestRefund(ctx, tx, o.ID, "order cancelled after payment"); err != nil {
				return err
			}
		}
		out = *o
		return nil
	})
	return out, err
}
