package store

import (
	"context"
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
	// Redis is the hold store of StrategyRedis.
	Redis RedisHolds
	// Batch tunes StrategyBatch.
	Batch BatchOptions
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
	// ActionHold, when positive, is how long an order whose payment awaits the
	// customer (3-D Secure) keeps its stock from that answer (ACTION_HOLD_TTL): its
	// expiry moves earlier, never later. Payments made over these Orders apply it.
	ActionHold time.Duration
}

// Orders implements checkout.OrderStore: the checkout transaction (place.go) and every
// status change, each with its outbox event.
type Orders struct {
	db       *bun.DB
	strategy Strategy
	holder   holder
	// group, for the batch strategy, gathers concurrent checkouts into one transaction;
	// nil: each checkout is a batch of its own.
	group    *batched[placeIn, placed]
	redis    RedisHolds
	now      func() time.Time
	onCommit func(checkout.Order)
	notify   func()
	// actionHold is OrdersOptions.ActionHold.
	actionHold time.Duration
	// soldOut remembers SKUs seen sold out, so checkouts of them are answered from a
	// lock-free read instead of queueing on the row lock (see precheck).
	soldOut sync.Map
}

// NewOrders returns the order adapter over db; now is its clock (a nil clock panics), and
// that of the Payments made over it. Close stops a batch strategy's workers.
func NewOrders(db *bun.DB, now func() time.Time, opt OrdersOptions) *Orders {
	mustClock("NewOrders", now)
	if opt.Strategy == "" {
		opt.Strategy = StrategyLock
	}
	s := &Orders{db: db, strategy: opt.Strategy, holder: rowLock{}, now: now, onCommit: opt.OnCommit, notify: opt.Notify,
		actionHold: opt.ActionHold}
	switch opt.Strategy {
	case StrategyOptimistic:
		s.holder = compareAndSet{onRetry: opt.OnRetry}
	case StrategyRedis:
		if opt.Redis != nil {
			s.redis = opt.Redis
			s.holder = redisHold{holds: opt.Redis, sync: s.SyncStockCache, onFallback: opt.OnRedisFallback}
		}
	case StrategyBatch:
		b := opt.Batch
		// Two checkouts with one idempotency key, or of one cart, never share a batch:
		// the second waits for the next. (Two of one customer may: the batch decides
		// them in arrival order under one lock on the customer, see standings.)
		s.group = newBatched(groupOptions{name: "store.checkout_batch", maxSize: b.MaxSize, maxWait: b.MaxWait,
			workers: b.Workers, queue: b.Queue, onBatch: b.OnBatch},
			func(in placeIn) []string {
				keys := []string{"key\x00" + in.p.CustomerID + "\x00" + in.p.IdempotencyKey}
				if in.p.CartID != "" {
					keys = append(keys, "cart\x00"+in.p.CartID)
				}
				return keys
			}, s.place)
	}
	return s
}

// Close stops the batch workers (after the batches in hand).
func (s *Orders) Close() {
	if s.group != nil {
		s.group.close()
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

func loadOrder(ctx context.Context, db bun.IDB, id string, lock bool) (*checkout.Order, error) {
	r, err := oneRow[orderRow](ctx, db, "SELECT "+orderCols+" FROM orders WHERE id = ?", lock, id)
	if err != nil || r == nil {
		return nil, wrapf(err, "order")
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
		WHERE order_id IN (?) ORDER BY order_id, line_no`, bun.List(ids)).Scan(ctx, &items); err != nil {
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
	if err := s.db.NewRaw("SELECT "+orderCols+" FROM orders WHERE id IN (?)", bun.List(ids)).Scan(ctx, &rows); err != nil {
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
