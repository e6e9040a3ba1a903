package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/uptrace/bun"

	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/event"
	"github.com/checkout-backend/checkout/outbox"
)

// BatchOptions tune the batch strategy (group commit).
type BatchOptions struct {
	// MaxSize bounds the orders of one transaction (default 64).
	MaxSize int
	// MaxWait is how long a batch waits for company while another batch is in flight
	// (default 1ms). An idle database takes a lone checkout at once.
	MaxWait time.Duration
	// Workers is how many batch transactions run at once (default 4).
	Workers int
	// Queue bounds the checkouts waiting for a batch (default 4096); past it a checkout
	// answers SERVICE_UNAVAILABLE at once (load shedding).
	Queue int
	// OnBatch, when set, is told each batch's size (metrics).
	OnBatch func(size int)
}

// ErrBusy is the answer of a full checkout queue: retry shortly.
var ErrBusy = fmt.Errorf("%w: too many checkouts waiting", checkout.ErrUnavailable)

type placeResult struct {
	order  checkout.Order
	replay bool
	err    error
}

type placeReq struct {
	p   checkout.PlaceOrder
	ctx context.Context
	res chan placeResult // buffered: the batch never blocks on a gone caller
}

type idemKey struct{ customer, key string }

// batcher groups concurrent checkouts into batches placed in one transaction each.
type batcher struct {
	orders *Orders
	opt    BatchOptions
	group  *group[*placeReq]
}

func newBatcher(o *Orders, opt BatchOptions) *batcher {
	b := &batcher{orders: o, opt: opt}
	// Two checkouts with one idempotency key never share a batch: the second waits for
	// the next.
	b.group = newGroup(groupOptions{maxSize: opt.MaxSize, maxWait: opt.MaxWait, workers: opt.Workers, queue: opt.Queue},
		func(r *placeReq) string { return r.p.CustomerID + "\x00" + r.p.IdempotencyKey },
		b.run,
		func(r *placeReq) { r.res <- placeResult{err: ErrBusy} })
	return b
}

func (b *batcher) close() { b.group.close() }

// place queues a checkout for the next batch and waits for its result.
func (b *batcher) place(ctx context.Context, p checkout.PlaceOrder) (checkout.Order, bool, error) {
	req := &placeReq{p: p, ctx: ctx, res: make(chan placeResult, 1)}
	if !b.group.submit(req) {
		return checkout.Order{}, false, ErrBusy
	}
	select {
	case r := <-req.res:
		return r.order, r.replay, r.err
	case <-ctx.Done():
		// The batch may still commit it: a retry with the same key finds it.
		return checkout.Order{}, false, fmt.Errorf("%w: %w", checkout.ErrUnavailable, ctx.Err())
	}
}

// run places a batch in one transaction. Checkouts whose callers gave up are left out.
// When the transaction fails for a reason that is not one order's (a bug, a constraint
// no check foresaw), each order is placed on its own, so one bad order never fails the
// others.
func (b *batcher) run(batch []*placeReq) {
	live := batch[:0]
	for _, r := range batch {
		if r.ctx.Err() != nil {
			r.res <- placeResult{err: fmt.Errorf("%w: %w", checkout.ErrUnavailable, r.ctx.Err())}
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	if b.opt.OnBatch != nil {
		b.opt.OnBatch(len(live))
	}
	ps := make([]checkout.PlaceOrder, len(live))
	hdrs := make([]map[string]string, len(live))
	for i, r := range live {
		// Each order's event carries its own caller's trace and correlation id.
		ps[i], hdrs[i] = r.p, outbox.ContextHeaders(r.ctx)
	}
	var results []placeResult
	callers := make([]context.Context, len(live))
	for i, r := range live {
		callers[i] = r.ctx
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ctx, span := batchContext(ctx, "store.checkout_batch", callers)
	defer span.End()
	err := InTx(ctx, b.orders.db, func(ctx context.Context, tx bun.Tx) error {
		var err error
		results, err = b.orders.placeBatch(ctx, tx, ps, hdrs)
		return err
	})
	if err != nil {
		if len(live) > 1 && !errors.Is(err, checkout.ErrUnavailable) {
			for _, r := range live {
				o, replay, err := b.orders.placeSingle(r.ctx, r.p, LockingReserver{})
				r.res <- placeResult{order: o, replay: replay, err: err}
			}
			return
		}
		for _, r := range live {
			r.res <- placeResult{err: err}
		}
		return
	}
	for i, r := range live {
		if results[i].err == nil && !results[i].replay {
			b.orders.committed(results[i].order)
		}
		r.res <- results[i]
	}
}

// placeBatch places ps in tx: each order its own rows, key and event; the inventory rows
// of all of them locked once, in (sku, warehouse) order. An order that cannot be placed
// (out of stock, unknown SKU, a reused key) gets its error and leaves nothing behind;
// the others go on. The error return is the transaction's own.
func (s *Orders) placeBatch(ctx context.Context, tx bun.Tx, ps []checkout.PlaceOrder, hdrs []map[string]string) ([]placeResult, error) {
	res := make([]placeResult, len(ps))
	n := len(ps)

	// 1. Idempotency keys first: a duplicate of another transaction's key waits here.
	cust, key, id := make([]string, n), make([]string, n), make([]string, n)
	hash := make([][]byte, n)
	at := make([]time.Time, n)
	for i, p := range ps {
		cust[i], key[i], id[i], hash[i], at[i] = p.CustomerID, p.IdempotencyKey, p.OrderID, p.RequestHash, p.Now.Truncate(time.Microsecond)
	}
	var fresh []struct {
		CustomerID string `bun:"customer_id"`
		Key        string `bun:"key"`
	}
	if err := tx.NewRaw(`INSERT INTO idempotency_keys (customer_id, key, request_hash, order_id, created_at)
		SELECT * FROM unnest(?::text[], ?::text[], ?::bytea[], ?::uuid[], ?::timestamptz[])
		ON CONFLICT DO NOTHING RETURNING customer_id, key`,
		pgArray(cust), pgArray(key), pgArray(hash), pgArray(id), pgArray(at)).Scan(ctx, &fresh); err != nil {
		return nil, fmt.Errorf("idempotency keys: %w", err)
	}
	isFresh := make(map[idemKey]bool, len(fresh))
	for _, k := range fresh {
		isFresh[idemKey{k.CustomerID, k.Key}] = true
	}
	var used []int
	for i, p := range ps {
		if !isFresh[idemKey{p.CustomerID, p.IdempotencyKey}] {
			used = append(used, i)
		}
	}
	if err := s.replays(ctx, tx, ps, used, res); err != nil {
		return nil, err
	}
	var keyed []int // orders whose key this transaction stored
	for i := range ps {
		if isFresh[idemKey{ps[i].CustomerID, ps[i].IdempotencyKey}] {
			keyed = append(keyed, i)
		}
	}

	// 2. Prices, and the orders with their items (before the row locks).
	skuSet := map[string]bool{}
	for _, i := range keyed {
		for _, l := range ps[i].Lines {
			skuSet[l.SKU] = true
		}
	}
	skus := make([]string, 0, len(skuSet))
	for sku := range skuSet {
		skus = append(skus, sku)
	}
	prices, err := pricesOf(ctx, tx, skus)
	if err != nil {
		return nil, err
	}
	field := []string{"input", "items"}
	var priced []int
	var orders []checkout.Order
	var tokens []string
	for _, i := range keyed {
		items, total, currency, err := checkout.PriceLines(ps[i].Lines, prices, field, false)
		if err != nil {
			res[i].err = err
			continue
		}
		priced = append(priced, i)
		orders = append(orders, newOrder(ps[i], items, total, currency))
		tokens = append(tokens, ps[i].PaymentToken)
	}
	if len(orders) > 0 {
		if err := insertOrders(ctx, tx, orders, tokens); err != nil {
			return nil, err
		}
	}

	// 3. Lock every inventory row once and allocate in arrival order.
	var levels []level
	if len(priced) > 0 {
		if err := tx.NewRaw(`SELECT sku, warehouse, on_hand, reserved FROM inventory
			WHERE sku IN (?) ORDER BY sku, warehouse FOR NO KEY UPDATE`, bun.In(skus)).Scan(ctx, &levels); err != nil {
			return nil, fmt.Errorf("lock inventory: %w", err)
		}
	}
	avail := levelsBySKU(levels)
	var total allocation
	var rOrder, rSKU, rWH []string
	var rQty []int
	var rExp, rAt []time.Time
	var placed []checkout.Order
	var placedHdrs []map[string]string
	var dropKeys []int
	var dropOrders []string
	for j, i := range priced {
		p := ps[i]
		o := orders[j]
		a, err := allocate(avail, Hold{OrderID: o.ID, Lines: p.Lines, Field: field})
		if err != nil {
			res[i].err = err
			dropOrders = append(dropOrders, o.ID)
			continue
		}
		for k := range a.sku {
			take(avail, a.sku[k], a.warehouse[k], a.qty[k])
			total.add(a.sku[k], a.warehouse[k], a.qty[k])
			rOrder, rSKU, rWH, rQty = append(rOrder, o.ID), append(rSKU, a.sku[k]), append(rWH, a.warehouse[k]), append(rQty, a.qty[k])
			rExp, rAt = append(rExp, *o.ReservationExpiresAt), append(rAt, o.CreatedAt)
		}
		res[i] = placeResult{order: o}
		placed = append(placed, o)
		placedHdrs = append(placedHdrs, hdrs[i])
	}
	for _, i := range keyed {
		if res[i].err != nil {
			dropKeys = append(dropKeys, i)
		}
	}

	// 4. In one round trip: what was refused leaves nothing behind; the holds, their
	// reservations and the events are written.
	var sc script
	if len(dropKeys) > 0 {
		dc, dk := make([]string, len(dropKeys)), make([]string, len(dropKeys))
		for j, i := range dropKeys {
			dc[j], dk[j] = ps[i].CustomerID, ps[i].IdempotencyKey
		}
		sc.add(`DELETE FROM idempotency_keys WHERE (customer_id, key) IN (SELECT * FROM unnest(?::text[], ?::text[]))`, pgArray(dc), pgArray(dk))
	}
	if len(dropOrders) > 0 {
		sc.add("DELETE FROM orders WHERE id IN (?)", bun.In(dropOrders))
	}
	if len(placed) > 0 {
		now := s.now()
		sc.add(`UPDATE inventory i SET reserved = i.reserved + v.q, version = i.version + 1, updated_at = ?
			FROM (SELECT sku, wh, sum(q)::int AS q FROM unnest(?::text[], ?::text[], ?::int[]) AS u(sku, wh, q) GROUP BY sku, wh) AS v
			WHERE i.sku = v.sku AND i.warehouse = v.wh`, now, pgArray(total.sku), pgArray(total.warehouse), pgArray(total.qty))
		sc.add(`INSERT INTO reservations (order_id, sku, warehouse, quantity, expires_at, created_at, updated_at)
			SELECT o, sku, wh, q, e, a, a FROM unnest(?::uuid[], ?::text[], ?::text[], ?::int[], ?::timestamptz[], ?::timestamptz[]) AS v(o, sku, wh, q, e, a)`,
			pgArray(rOrder), pgArray(rSKU), pgArray(rWH), pgArray(rQty), pgArray(rExp), pgArray(rAt))
		envs := make([]event.Envelope, len(placed))
		for i, o := range placed {
			env, err := orderEvent(o, "")
			if err != nil {
				return nil, err
			}
			for k, v := range placedHdrs[i] {
				env.Headers[k] = v
			}
			envs[i] = env
		}
		q, args, err := outbox.InsertStatement(ctx, envs)
		if err != nil {
			return nil, err
		}
		sc.add(q, args...)
	}
	if err := sc.exec(ctx, tx); err != nil {
		return nil, fmt.Errorf("place batch: %w", err)
	}
	return res, nil
}

// take removes q units of sku from warehouse wh in the in-memory levels.
func take(levels map[string][]checkout.StockLevel, sku, wh string, q int) {
	for k := range levels[sku] {
		if levels[sku][k].Warehouse == wh {
			levels[sku][k].Available -= q
		}
	}
}

// replays answers the checkouts (indexes used) whose key was stored before.
func (s *Orders) replays(ctx context.Context, tx bun.IDB, ps []checkout.PlaceOrder, used []int, res []placeResult) error {
	if len(used) == 0 {
		return nil
	}
	uc, uk := make([]string, len(used)), make([]string, len(used))
	for j, i := range used {
		uc[j], uk[j] = ps[i].CustomerID, ps[i].IdempotencyKey
	}
	var rows []struct {
		CustomerID  string `bun:"customer_id"`
		Key         string `bun:"key"`
		RequestHash []byte `bun:"request_hash"`
		OrderID     string `bun:"order_id"`
	}
	if err := tx.NewRaw(`SELECT customer_id, key, request_hash, order_id FROM idempotency_keys
		WHERE (customer_id, key) IN (SELECT * FROM unnest(?::text[], ?::text[]))`, pgArray(uc), pgArray(uk)).Scan(ctx, &rows); err != nil {
		return fmt.Errorf("idempotency keys: %w", err)
	}
	byKey := map[idemKey]int{}
	for j, r := range rows {
		byKey[idemKey{r.CustomerID, r.Key}] = j
	}
	for _, i := range used {
		j, ok := byKey[idemKey{ps[i].CustomerID, ps[i].IdempotencyKey}]
		if !ok {
			// Stored and deleted again by a transaction that refused it: place it next time.
			res[i].err = fmt.Errorf("%w: a concurrent checkout with this key was refused; retry", checkout.ErrUnavailable)
			continue
		}
		o, err := replayOf(ctx, tx, ps[i], rows[j].RequestHash, rows[j].OrderID)
		if err != nil {
			if checkout.ErrorCode(err) == "" {
				return err
			}
			res[i].err = err
			continue
		}
		res[i] = placeResult{order: *o, replay: true}
	}
	return nil
}

func pricesOf(ctx context.Context, tx bun.IDB, skus []string) (map[string]checkout.Price, error) {
	prices := map[string]checkout.Price{}
	if len(skus) == 0 {
		return prices, nil
	}
	var rows []struct {
		SKU        string `bun:"sku"`
		PriceCents int64  `bun:"price_cents"`
		Currency   string `bun:"currency"`
	}
	if err := tx.NewRaw("SELECT sku, price_cents, currency FROM products WHERE sku IN (?)", bun.In(skus)).Scan(ctx, &rows); err != nil {
		return nil, fmt.Errorf("prices: %w", err)
	}
	for _, r := range rows {
		prices[r.SKU] = checkout.Price{Cents: r.PriceCents, Currency: r.Currency}
	}
	return prices, nil
}
