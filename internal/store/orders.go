package store

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/uptrace/bun"

	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/event"
	"github.com/checkout-backend/checkout/outbox"
)

// OrdersOptions configure the order adapter.
type OrdersOptions struct {
	// Strategy is the reservation strategy (default StrategyLock for tests and tools;
	// the service's default is RESERVATION_STRATEGY=batch).
	Strategy Strategy
	// Reserver overrides the single-order reservation step of the strategy (tests).
	Reserver Reserver
	// Redis is the hold store of StrategyRedis.
	Redis RedisHolds
	// Batch tunes StrategyBatch.
	Batch BatchOptions
	// Now is the one clock (default time.Now).
	Now func() time.Time
	// OnCommit, when set, is told every order change after its transaction committed
	// (business metrics: each status change counted once, never one that rolled back).
	OnCommit func(o checkout.Order)
	// OnRetry, when set, is told each lost optimistic compare-and-set.
	OnRetry func()
	// OnRedisFallback, when set, is told each time Redis could not answer and a
	// checkout went on as the lock strategy.
	OnRedisFallback func(error)
	// Notify, when set, is called after a commit that wrote events (outbox.Notifier):
	// it wakes the relays without a NOTIFY inside the transaction.
	Notify func()
}

// Orders implements checkout.OrderStore: the checkout transaction and every status
// change, each with its outbox event.
type Orders struct {
	db       *bun.DB
	strategy Strategy
	reserver Reserver
	redis    RedisHolds
	batcher  *batcher
	now      func() time.Time
	onCommit func(checkout.Order)
	// onRedisFallback is OrdersOptions.OnRedisFallback.
	onRedisFallback func(error)
	notify          func()
	// soldOut remembers SKUs seen sold out, so checkouts of them are answered from a
	// lock-free read instead of queueing on the row lock (see precheck).
	soldOut sync.Map
}

// NewOrders returns the order adapter over db. Close stops a batch strategy's workers.
func NewOrders(db *bun.DB, opt OrdersOptions) *Orders {
	if opt.Strategy == "" {
		opt.Strategy = StrategyLock
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	s := &Orders{db: db, strategy: opt.Strategy, reserver: opt.Reserver, redis: opt.Redis, now: opt.Now, onCommit: opt.OnCommit,
		onRedisFallback: opt.OnRedisFallback, notify: opt.Notify}
	if s.reserver == nil {
		s.reserver = LockingReserver{}
		if opt.Strategy == StrategyOptimistic {
			s.reserver = OptimisticReserver{OnRetry: opt.OnRetry}
		}
	}
	if opt.Strategy == StrategyBatch {
		s.batcher = newBatcher(s, opt.Batch)
	}
	return s
}

// Close stops the batch workers (after the batches in hand).
func (s *Orders) Close() {
	if s.batcher != nil {
		s.batcher.close()
	}
}

// Strategy is the reservation strategy in use.
func (s *Orders) Strategy() Strategy { return s.strategy }

var _ checkout.OrderStore = (*Orders)(nil)

// committed runs after a transaction that changed o committed: metrics, and a wake-up
// for the relays (its event is in the outbox).
func (s *Orders) committed(o checkout.Order) {
	if s.onCommit != nil {
		s.onCommit(o)
	}
	s.wakeRelays()
}

func (s *Orders) wakeRelays() {
	if s.notify != nil {
		s.notify()
	}
}

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

// PlaceOrder is the checkout: idempotency key, cart, prices, reservation, order, items
// and the order.placed event commit together or not at all. A checkout of a SKU seen
// sold out is answered OUT_OF_STOCK from a lock-free read, without queueing on the row
// lock; otherwise the strategy places it (the batch strategy with others in one
// transaction).
func (s *Orders) PlaceOrder(ctx context.Context, p checkout.PlaceOrder) (checkout.Order, bool, error) {
	if err := s.precheck(ctx, p); err != nil {
		return checkout.Order{}, false, err
	}
	var (
		o      checkout.Order
		replay bool
		err    error
	)
	switch {
	case s.strategy == StrategyRedis && s.redis != nil:
		o, replay, err = s.placeWithHold(ctx, p)
	case s.batcher != nil && p.CartID == "":
		o, replay, err = s.batcher.place(ctx, p)
	default:
		o, replay, err = s.placeSingle(ctx, p, s.reserver)
	}
	if err != nil {
		s.noteOutOfStock(err, p)
		return checkout.Order{}, false, err
	}
	return o, replay, nil
}

// placeSingle places one order in a transaction of its own.
func (s *Orders) placeSingle(ctx context.Context, p checkout.PlaceOrder, r Reserver) (checkout.Order, bool, error) {
	var out checkout.Order
	var replay bool
	err := InTx(ctx, s.db, func(ctx context.Context, tx bun.Tx) error {
		var err error
		out, replay, err = s.place(ctx, tx, p, r)
		return err
	})
	if err != nil {
		return checkout.Order{}, false, err
	}
	if !replay {
		s.committed(out)
	}
	return out, replay, nil
}

// place runs one checkout in tx.
func (s *Orders) place(ctx context.Context, tx bun.Tx, p checkout.PlaceOrder, r Reserver) (checkout.Order, bool, error) {
	now := p.Now.Truncate(time.Microsecond)
	if prev, err := claimKey(ctx, tx, p, now); err != nil || prev != nil {
		if prev != nil {
			return *prev, true, nil
		}
		return checkout.Order{}, false, err
	}
	lines, field, prices, err := s.linesOf(ctx, tx, p)
	if err != nil {
		return checkout.Order{}, false, err
	}
	items, total, currency, err := checkout.PriceLines(lines, prices, field, p.CartID != "")
	if err != nil {
		return checkout.Order{}, false, err
	}
	o := newOrder(p, items, total, currency)
	if err := insertOrders(ctx, tx, []checkout.Order{o}, []string{p.PaymentToken}); err != nil {
		return checkout.Order{}, false, err
	}
	// The row locks are taken last, so they are held for the shortest time.
	if err := r.Reserve(ctx, tx, Hold{OrderID: o.ID, Lines: lines, Field: field, ExpiresAt: *o.ReservationExpiresAt, Now: now}); err != nil {
		return checkout.Order{}, false, err
	}
	if p.CartID != "" {
		if _, err := tx.ExecContext(ctx, "UPDATE carts SET order_id = ?, updated_at = ? WHERE id = ?", o.ID, now, p.CartID); err != nil {
			return checkout.Order{}, false, fmt.Errorf("close cart: %w", err)
		}
	}
	if err := writeOrderEvents(ctx, tx, []checkout.Order{o}, p.CartID); err != nil {
		return checkout.Order{}, false, err
	}
	return o, false, nil
}

func newOrder(p checkout.PlaceOrder, items []checkout.OrderItem, total int64, currency string) checkout.Order {
	now := p.Now.Truncate(time.Microsecond)
	expires := p.ExpiresAt.Truncate(time.Microsecond)
	return checkout.Order{ID: p.OrderID, CustomerID: p.CustomerID, Status: checkout.StatusPendingPayment,
		Items: items, TotalCents: total, Currency: currency, CreatedAt: now, UpdatedAt: now,
		ReservationExpiresAt: &expires, Sequence: 1}
}

// claimKey stores the checkout's idempotency key first (its order follows in the same
// transaction: the foreign key is deferred). A concurrent call with the same key waits
// on the unique index until the first commits or rolls back, so a duplicate sees the
// first call's key: it returns the first call's order when the input is the same, and
// IDEMPOTENCY_KEY_REUSED when it is not. nil, nil means the key is new.
func claimKey(ctx context.Context, tx bun.IDB, p checkout.PlaceOrder, now time.Time) (*checkout.Order, error) {
	res, err := tx.ExecContext(ctx, `INSERT INTO idempotency_keys (customer_id, key, request_hash, order_id, created_at)
		VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`, p.CustomerID, p.IdempotencyKey, p.RequestHash, p.OrderID, now)
	if err != nil {
		return nil, fmt.Errorf("idempotency key: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return nil, nil
	}
	var key struct {
		RequestHash []byte `bun:"request_hash"`
		OrderID     string `bun:"order_id"`
	}
	if err := tx.NewRaw("SELECT request_hash, order_id FROM idempotency_keys WHERE customer_id = ? AND key = ?", p.CustomerID, p.IdempotencyKey).Scan(ctx, &key); err != nil {
		return nil, fmt.Errorf("idempotency key: %w", err)
	}
	return replayOf(ctx, tx, p, key.RequestHash, key.OrderID)
}

// replayOf is the answer to a checkout whose key was used before: the first order when
// the input is the same, IDEMPOTENCY_KEY_REUSED when it is not.
func replayOf(ctx context.Context, tx bun.IDB, p checkout.PlaceOrder, hash []byte, orderID string) (*checkout.Order, error) {
	if !bytes.Equal(hash, p.RequestHash) {
		return nil, checkout.Errorf(checkout.IdempotencyKeyReused, []string{"input", "idempotencyKey"}, "this idempotencyKey was used with other input; use a new key for a new checkout")
	}
	o, err := loadOrder(ctx, tx, orderID, false)
	if err != nil {
		return nil, err
	}
	if o == nil {
		return nil, fmt.Errorf("idempotency key of customer %s names a missing order", p.CustomerID)
	}
	return o, nil
}

// linesOf returns what the checkout asks for with the current prices: the cart's lines
// (read with its prices, the cart locked) or the request's lines, with the input path
// errors of the lines refer to.
func (s *Orders) linesOf(ctx context.Context, tx bun.Tx, p checkout.PlaceOrder) ([]checkout.Line, []string, map[string]checkout.Price, error) {
	prices := map[string]checkout.Price{}
	if p.CartID == "" {
		skus := make([]string, len(p.Lines))
		for i, l := range p.Lines {
			skus[i] = l.SKU
		}
		var rows []struct {
			SKU        string `bun:"sku"`
			PriceCents int64  `bun:"price_cents"`
			Currency   string `bun:"currency"`
		}
		if err := tx.NewRaw("SELECT sku, price_cents, currency FROM products WHERE sku IN (?)", bun.In(skus)).Scan(ctx, &rows); err != nil {
			return nil, nil, nil, fmt.Errorf("prices: %w", err)
		}
		for _, r := range rows {
			prices[r.SKU] = checkout.Price{Cents: r.PriceCents, Currency: r.Currency}
		}
		return p.Lines, []string{"input", "items"}, prices, nil
	}
	field := []string{"input", "cartId"}
	cart, err := loadCart(ctx, tx, p.CartID, true)
	switch {
	case err != nil:
		return nil, nil, nil, err
	case cart == nil || cart.CustomerID != p.CustomerID:
		return nil, nil, nil, checkout.Errorf(checkout.CartNotFound, field, "cart not found")
	case cart.OrderID != nil:
		return nil, nil, nil, checkout.Errorf(checkout.CartNotFound, field, "cart was already checked out")
	case len(cart.Items) == 0:
		return nil, nil, nil, checkout.Errorf(checkout.CartEmpty, field, "cart is empty")
	}
	lines := make([]checkout.Line, len(cart.Items))
	for i, it := range cart.Items {
		lines[i] = checkout.Line{SKU: it.SKU, Quantity: it.Quantity}
		prices[it.SKU] = checkout.Price{Cents: it.UnitPriceCents, Currency: it.Currency}
	}
	return lines, field, prices, nil
}

// insertOrders writes orders and their items in one round trip, whatever their number;
// tokens[i] is orders[i]'s payment token.
func insertOrders(ctx context.Context, tx bun.IDB, orders []checkout.Order, tokens []string) error {
	var sc script
	addOrders(&sc, orders, tokens)
	if err := sc.exec(ctx, tx); err != nil {
		return fmt.Errorf("insert orders: %w", err)
	}
	return nil
}

// addOrders adds the statements writing orders and their items to sc.
func addOrders(sc *script, orders []checkout.Order, tokens []string) {
	n := len(orders)
	id, cust, cur, tok := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	total := make([]int64, n)
	expires, created := make([]time.Time, n), make([]time.Time, n)
	var iOrder, iSKU []string
	var iLine, iQty []int
	var iUnit []int64
	for i, o := range orders {
		id[i], cust[i], cur[i], tok[i], total[i] = o.ID, o.CustomerID, o.Currency, tokens[i], o.TotalCents
		expires[i], created[i] = *o.ReservationExpiresAt, o.CreatedAt
		for j, it := range o.Items {
			iOrder, iSKU = append(iOrder, o.ID), append(iSKU, it.SKU)
			iLine, iQty, iUnit = append(iLine, j+1), append(iQty, it.Quantity), append(iUnit, it.UnitPriceCents)
		}
	}
	sc.add(`INSERT INTO orders (id, customer_id, status, total_cents, currency,
		payment_token, reservation_expires_at, event_seq, created_at, updated_at)
		SELECT v.id, v.cust, 'PENDING_PAYMENT', v.total, v.cur, v.tok, v.exp, 1, v.at, v.at
		FROM unnest(?::uuid[], ?::text[], ?::bigint[], ?::text[], ?::text[], ?::timestamptz[], ?::timestamptz[]) AS v(id, cust, total, cur, tok, exp, at)`,
		pgArray(id), pgArray(cust), pgArray(total), pgArray(cur), pgArray(tok), pgArray(expires), pgArray(created))
	sc.add(`INSERT INTO order_items (order_id, line_no, sku, quantity, unit_price_cents)
		SELECT * FROM unnest(?::uuid[], ?::int[], ?::text[], ?::int[], ?::bigint[])`,
		pgArray(iOrder), pgArray(iLine), pgArray(iSKU), pgArray(iQty), pgArray(iUnit))
}

// orderEvent is the event announcing o's current status; order.placed also carries
// the lines and the cart it came from (cartID, "" for a checkout of items), for
// analytics. Partner webhook bodies keep only the contract's fields (webhook.Body).
func orderEvent(o checkout.Order, cartID string) (event.Envelope, error) {
	typ := event.TypeForStatus(string(o.Status))
	p := event.OrderPayload{
		Order: event.OrderData{ID: o.ID, Status: string(o.Status), Sequence: o.Sequence, TotalCents: o.TotalCents,
			Currency: o.Currency, UpdatedAt: o.UpdatedAt, TrackingNumber: o.TrackingNumber, PaymentFailureReason: o.PaymentFailureReason},
		CustomerID: o.CustomerID,
	}
	if typ == event.OrderPlaced {
		p.CartID = cartID
		for _, it := range o.Items {
			p.Order.Items = append(p.Order.Items, event.OrderItemData{SKU: it.SKU, Quantity: it.Quantity, UnitPriceCents: it.UnitPriceCents})
		}
	}
	return event.New(typ, o.ID, o.UpdatedAt, p)
}

// writeOrderEvents writes the event of each order's current status, in one statement;
// cartIDs, when given, are the carts the orders came from.
func writeOrderEvents(ctx context.Context, tx bun.IDB, orders []checkout.Order, cartIDs ...string) error {
	envs := make([]event.Envelope, len(orders))
	for i, o := range orders {
		cart := ""
		if i < len(cartIDs) {
			cart = cartIDs[i]
		}
		env, err := orderEvent(o, cart)
		if err != nil {
			return err
		}
		envs[i] = env
	}
	return outbox.InsertMany(ctx, tx, envs)
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
	o, err := loadOrder(ctx, s.db, id, false)
	return o, mapErr(err)
}

// Orders loads many orders with their items in two queries.
func (s *Orders) Orders(ctx context.Context, ids []string) (map[string]checkout.Order, error) {
	out := map[string]checkout.Order{}
	if len(ids) == 0 {
		return out, nil
	}
	var rows []orderRow
	if err := s.db.NewRaw("SELECT "+orderCols+" FROM orders WHERE id IN (?)", bun.In(ids)).Scan(ctx, &rows); err != nil {
		return nil, mapErr(fmt.Errorf("orders: %w", err))
	}
	ptrs := make([]*checkout.Order, len(rows))
	for i, r := range rows {
		o := r.order()
		ptrs[i] = &o
	}
	if err := attachItems(ctx, s.db, ptrs); err != nil {
		return nil, mapErr(err)
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
		return checkout.OrderPage{}, mapErr(fmt.Errorf("customer orders: %w", err))
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
		return checkout.OrderPage{}, mapErr(err)
	}
	page.Orders = make([]checkout.Order, len(ptrs))
	for i, o := range ptrs {
		page.Orders[i] = *o
	}
	return page, nil
}

// ExpiredOrders lists up to limit unpaid orders whose reservation ran out before now.
func (s *Orders) ExpiredOrders(ctx context.Context, now time.Time, limit int) ([]string, error) {
	var ids []string
	if err := s.db.NewRaw(`SELECT id FROM orders WHERE status = 'PENDING_PAYMENT' AND reservation_expires_at < ?
		ORDER BY reservation_expires_at LIMIT ?`, now, limit).Scan(ctx, &ids); err != nil {
		return nil, mapErr(fmt.Errorf("expired orders: %w", err))
	}
	return ids, nil
}

// Transition applies one status change under the order's row lock, in one transaction:
// decide chooses it, Order.Apply makes it, and the store moves the stock, requests the
// refund Apply asks for, saves the order and writes its event.
func (s *Orders) Transition(ctx context.Context, id string, decide func(o *checkout.Order) (checkout.Change, error)) (checkout.Order, error) {
	var out checkout.Order
	var changed bool
	var eff checkout.Effects
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
		eff, changed, err = s.apply(ctx, tx, o, ch)
		out = *o
		return err
	})
	if err != nil {
		return checkout.Order{}, err
	}
	if changed {
		s.afterCommit(out, eff)
	}
	return out, nil
}

// apply makes the change ch to o (loaded under its row lock in tx) and its effects,
// in one round trip; changed is false when ch changes nothing.
func (s *Orders) apply(ctx context.Context, tx bun.Tx, o *checkout.Order, ch checkout.Change) (eff checkout.Effects, changed bool, err error) {
	var c changes
	if eff, changed, err = s.stage(&c, o, ch, outbox.ContextHeaders(ctx)); err != nil {
		return eff, false, err
	}
	if err := c.exec(ctx, tx); err != nil {
		return eff, false, fmt.Errorf("apply %s to order %s: %w", ch.To, o.ID, err)
	}
	return eff, changed, nil
}

// stage applies ch to o in memory and adds to c what saves it: the order's row, its
// stock move, its event (with headers, its caller's trace and correlation id) and any
// refund request. Nothing runs until c does.
func (s *Orders) stage(c *changes, o *checkout.Order, ch checkout.Change, headers map[string]string) (eff checkout.Effects, changed bool, err error) {
	from := o.Status
	eff, err = o.Apply(ch, s.now().UTC().Truncate(time.Microsecond))
	if err != nil || ch.To == "" {
		return eff, false, err
	}
	c.stock(o.ID, eff.Stock, o.UpdatedAt)
	c.orders = append(c.orders, orderChange{o: *o, from: from})
	env, err := orderEvent(*o, "")
	if err != nil {
		return eff, false, err
	}
	for k, v := range headers {
		env.Headers[k] = v
	}
	c.events = append(c.events, env)
	if eff.RefundReason != "" {
		if err := addRefundRequest(&c.after, o.ID, eff.RefundReason, o.UpdatedAt, headers); err != nil {
			return eff, false, err
		}
	}
	return eff, true, nil
}
