package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/uptrace/bun"

	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/event"
	"github.com/checkout-backend/checkout/outbox"
)

// This file is the checkout's one write path. Every strategy places every checkout
// here, as a batch: a lone checkout is a batch of one, run in its caller's goroutine;
// the batch strategy groups concurrent callers into one transaction (batched). What a
// strategy swaps is its holder (how an allocation is held) and whether it groups.

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

// placeIn is one checkout on its way through the write path.
type placeIn struct {
	p checkout.PlaceOrder
	// headers are the caller's trace context and correlation id, for its event (a
	// batch's transaction runs in a context of its own).
	headers map[string]string
}

// placed is the answer to one checkout: its order, and whether its idempotency key
// returned an earlier one.
type placed struct {
	order  checkout.Order
	replay bool
}

// errNothingPlaced rolls back a transaction in which no checkout placed an order (all
// refused or replayed): nothing to commit, no WAL to flush.
var errNothingPlaced = errors.New("no order placed")

// PlaceOrder is the checkout: idempotency key, cart, prices, reservation, order, items
// and the order.placed event commit together or not at all. A checkout of a SKU seen
// sold out is answered OUT_OF_STOCK from a lock-free read, without queueing on the row
// lock; otherwise the holder admits it and the write path places it, alone or with
// concurrent checkouts in one transaction.
func (s *Orders) PlaceOrder(ctx context.Context, p checkout.PlaceOrder) (checkout.Order, bool, error) {
	if err := s.precheck(ctx, p); err != nil {
		return checkout.Order{}, false, err
	}
	done, err := s.holder.admit(ctx, p)
	if err != nil {
		return checkout.Order{}, false, err
	}
	in := placeIn{p: p, headers: outbox.ContextHeaders(ctx)}
	var out placed
	if s.group != nil {
		out, err = s.group.do(ctx, in)
	} else {
		out, err = first(s.place(ctx, []placeIn{in}))
	}
	done(err == nil && !out.replay)
	if err != nil {
		s.noteOutOfStock(err, p)
		return checkout.Order{}, false, err
	}
	return out.order, out.replay, nil
}

// first is the answer to a batch of one.
func first(out []placed, errs []error, err error) (placed, error) {
	if err != nil {
		return placed{}, err
	}
	return out[0], errs[0]
}

// place places a batch of checkouts in one transaction and tells each committed order
// to OnCommit and the relays. errs holds each checkout's own refusal; err fails them
// all (batched then places them one by one).
func (s *Orders) place(ctx context.Context, ins []placeIn) ([]placed, []error, error) {
	var out []placed
	var errs []error
	err := InTx(ctx, s.db, func(ctx context.Context, tx bun.Tx) error {
		var err error
		var n int
		out, errs, n, err = s.placeIn(ctx, tx, ins)
		if err == nil && n == 0 {
			return errNothingPlaced
		}
		return err
	})
	if err != nil && !errors.Is(err, errNothingPlaced) {
		return nil, nil, err
	}
	for i := range out {
		if errs[i] == nil && !out[i].replay {
			s.committed(out[i].order)
		}
	}
	return out, errs, nil
}

// placeIn runs a batch of checkouts in tx and returns how many orders it placed. Each
// order has its own rows, key and event; the inventory rows of all of them are held
// once (the holder), in (sku, warehouse) order. A checkout that cannot be placed (out
// of stock, an unknown SKU, a reused key, a cart already checked out) gets its error
// and leaves nothing behind; the others go on. The round trips, whatever the batch's
// size: keys, carts (cart checkouts only), prices, orders, the holder's reads, then one
// script with every write that follows the allocation.
func (s *Orders) placeIn(ctx context.Context, tx bun.Tx, ins []placeIn) ([]placed, []error, int, error) {
	b := &batch{ins: ins, out: make([]placed, len(ins)), errs: make([]error, len(ins))}
	// 1. Idempotency keys first: a duplicate of another transaction's key waits here.
	if err := b.claim(ctx, tx); err != nil {
		return nil, nil, 0, err
	}
	// 2. Lines and prices, then the orders with their items, before the rows are held.
	if err := b.price(ctx, tx); err != nil {
		return nil, nil, 0, err
	}
	if len(b.orders) == 0 {
		return b.out, b.errs, 0, nil
	}
	// 3. The holder allocates in arrival order, holding the rows it read: the row locks
	// are taken last, so they are held for the shortest time.
	wants := make([]want, len(b.priced))
	for j, i := range b.priced {
		wants[j] = b.wants[i]
	}
	allocs, refused, err := s.holder.allocate(ctx, tx, wants)
	if err != nil {
		return nil, nil, 0, err
	}
	// 4. One round trip writes the rest.
	n, err := b.write(ctx, tx, allocs, refused, s.now().Truncate(time.Microsecond))
	return b.out, b.errs, n, err
}

// batch is one checkout transaction's working state: each checkout's answer (out or
// errs), and the orders that go on from one step to the next.
type batch struct {
	ins  []placeIn
	out  []placed
	errs []error
	// keyed are the checkouts whose key this transaction stored, wants their lines.
	keyed []int
	wants []want
	// priced are the keyed checkouts that were priced, in arrival order; orders[j] is
	// the order of ins[priced[j]].
	priced []int
	orders []checkout.Order
}

// claim stores the keys and answers the checkouts whose key was used before.
func (b *batch) claim(ctx context.Context, tx bun.Tx) error {
	fresh, err := claimKeys(ctx, tx, b.ins)
	if err != nil {
		return err
	}
	var used []int
	for i := range b.ins {
		if fresh[i] {
			b.keyed = append(b.keyed, i)
		} else {
			used = append(used, i)
		}
	}
	return replays(ctx, tx, b.ins, used, b.out, b.errs)
}

// price reads each keyed checkout's lines (a cart's under its lock) and their prices,
// checks each customer's purchase limits (standings), and inserts the orders it could
// price and that keep within them, with their items.
func (b *batch) price(ctx context.Context, tx bun.Tx) error {
	var err error
	if b.wants, err = linesOf(ctx, tx, b.ins, b.keyed, b.errs); err != nil {
		return err
	}
	var skus []string
	for _, i := range b.keyed {
		if b.errs[i] == nil {
			for _, l := range b.wants[i].lines {
				skus = append(skus, l.SKU)
			}
		}
	}
	// The customers' locks go with the prices (one round trip fewer) when the checkouts
	// have service-wide bounds: every customer of the batch is then checked.
	var lock []int32
	for _, i := range b.keyed {
		if p := b.ins[i].p; b.errs[i] == nil && p.Bounds.Any() {
			lock = append(lock, customerLockKey(p.CustomerID))
		}
	}
	lock = lockOrder(lock)
	prices, limits, err := pricesOf(ctx, tx, skus, lock)
	if err != nil {
		return err
	}
	var cand []int
	items := make([][]checkout.OrderItem, len(b.ins))
	totals := make([]int64, len(b.ins))
	currencies := make([]string, len(b.ins))
	for _, i := range b.keyed {
		if b.errs[i] != nil {
			continue
		}
		items[i], totals[i], currencies[i], err = checkout.PriceLines(b.wants[i].lines, prices, b.wants[i].field, b.ins[i].p.CartID != "")
		if err != nil {
			b.errs[i] = err
			continue
		}
		cand = append(cand, i)
	}
	// Purchase limits, under a lock on each customer, in arrival order: an order placed
	// counts against the same customer's next one in this batch. (Should the holder then
	// refuse that order for stock, the next one was judged as if it stood: a refusal
	// that errs on the safe side, for a customer with two checkouts in one batch.)
	held, err := standings(ctx, tx, b.ins, cand, b.wants, limits, lock)
	if err != nil {
		return err
	}
	var tokens []string
	for _, i := range cand {
		p := b.ins[i].p
		if st := held[p.CustomerID]; st != nil {
			if err := checkout.CheckStanding(p.Bounds, *st, b.wants[i].lines, limits, b.wants[i].field, p.CartID != ""); err != nil {
				b.errs[i] = err
				continue
			}
			st.Take(b.wants[i].lines)
		}
		b.priced = append(b.priced, i)
		b.orders = append(b.orders, newOrder(p, items[i], totals[i], currencies[i]))
		tokens = append(tokens, p.PaymentToken)
	}
	if len(b.orders) == 0 {
		return nil
	}
	return insertOrders(ctx, tx, b.orders, tokens)
}

// write sends, in one round trip, what follows the allocation: what was refused leaves
// nothing behind (its key and order deleted); the reserved units, the reservations, the
// carts' order and the events are written. It returns how many orders it placed; with
// none it writes nothing (the transaction rolls back).
func (b *batch) write(ctx context.Context, tx bun.Tx, allocs []allocation, refused []error, now time.Time) (int, error) {
	var total allocation
	var res reservationRows
	var carts cartRows
	var envs []event.Envelope
	var dropOrders []string
	for j, i := range b.priced {
		o := b.orders[j]
		if refused[j] != nil {
			b.errs[i] = refused[j]
			dropOrders = append(dropOrders, o.ID)
			continue
		}
		a := allocs[j]
		for k := range a.sku {
			total.add(a.sku[k], a.warehouse[k], a.qty[k])
			res.add(o, a.sku[k], a.warehouse[k], a.qty[k])
		}
		b.out[i] = placed{order: o}
		c := b.ins[i].p.CartID
		if c != "" {
			carts.add(o, c)
		}
		env, err := orderEvent(o, c)
		if err != nil {
			return 0, err
		}
		for h, v := range b.ins[i].headers {
			env.Headers[h] = v
		}
		envs = append(envs, env)
	}
	if len(envs) == 0 {
		return 0, nil
	}
	var sc script
	var dc, dk []string
	for _, i := range b.keyed {
		if b.errs[i] != nil {
			dc, dk = append(dc, b.ins[i].p.CustomerID), append(dk, b.ins[i].p.IdempotencyKey)
		}
	}
	if len(dc) > 0 {
		sc.add(`DELETE FROM idempotency_keys WHERE (customer_id, key) IN (SELECT * FROM unnest(?::text[], ?::text[]))`, pgArray(dc), pgArray(dk))
	}
	if len(dropOrders) > 0 {
		sc.add("DELETE FROM orders WHERE id IN (?)", bun.List(dropOrders))
	}
	sc.addHot(hotReserve, now, pgArray(total.sku), pgArray(total.warehouse), pgArray(total.qty))
	sc.addHot(hotInsertReservations,
		pgArray(res.order), pgArray(res.sku), pgArray(res.warehouse), pgArray(res.qty), pgArray(res.expires), pgArray(res.at))
	if len(carts.id) > 0 {
		sc.addHot(hotCloseCarts, pgArray(carts.order), pgArray(carts.id), pgArray(carts.at))
	}
	args, err := outbox.InsertArgs(ctx, envs)
	if err != nil {
		return 0, err
	}
	sc.addHot(outbox.InsertSQL, args...)
	if err := sc.exec(ctx, tx); err != nil {
		return 0, fmt.Errorf("place orders: %w", err)
	}
	return len(envs), nil
}

// cartRows are the carts a transaction closes, each with the order it became.
type cartRows struct {
	order, id []string
	at        []time.Time
}

func (c *cartRows) add(o checkout.Order, cartID string) {
	c.order, c.id, c.at = append(c.order, o.ID), append(c.id, cartID), append(c.at, o.CreatedAt)
}

// reservationRows are the reservations a transaction writes, one per order, SKU and
// warehouse.
type reservationRows struct {
	order, sku, warehouse []string
	qty                   []int
	expires, at           []time.Time
}

func (r *reservationRows) add(o checkout.Order, sku, wh string, q int) {
	r.order, r.sku, r.warehouse, r.qty = append(r.order, o.ID), append(r.sku, sku), append(r.warehouse, wh), append(r.qty, q)
	r.expires, r.at = append(r.expires, *o.ReservationExpiresAt), append(r.at, o.CreatedAt)
}

func newOrder(p checkout.PlaceOrder, items []checkout.OrderItem, total int64, currency string) checkout.Order {
	now := p.Now.Truncate(time.Microsecond)
	expires := p.ExpiresAt.Truncate(time.Microsecond)
	return checkout.Order{ID: p.OrderID, CustomerID: p.CustomerID, Status: checkout.StatusPendingPayment,
		Items: items, TotalCents: total, Currency: currency, CreatedAt: now, UpdatedAt: now,
		ReservationExpiresAt: &expires, Sequence: 1}
}

type idemKey struct{ customer, key string }

// claimKeys stores each checkout's idempotency key first (its order follows in the same
// transaction: the foreign key is deferred) and reports which it stored. A concurrent
// call with the same key waits on the unique index until the first commits or rolls
// back, so a duplicate sees the first call's key (replays).
func claimKeys(ctx context.Context, tx bun.IDB, ins []placeIn) ([]bool, error) {
	n := len(ins)
	cust, key, id := make([]string, n), make([]string, n), make([]string, n)
	hash := make([][]byte, n)
	at := make([]time.Time, n)
	for i, in := range ins {
		p := in.p
		cust[i], key[i], id[i], hash[i], at[i] = p.CustomerID, p.IdempotencyKey, p.OrderID, p.RequestHash, p.Now.Truncate(time.Microsecond)
	}
	var stored []struct {
		CustomerID string `bun:"customer_id"`
		Key        string `bun:"key"`
	}
	if err := tx.NewRaw(hotClaimKeys.For(tx),
		pgArray(cust), pgArray(key), pgArray(hash), pgArray(id), pgArray(at)).Scan(ctx, &stored); err != nil {
		return nil, fmt.Errorf("idempotency keys: %w", err)
	}
	isStored := make(map[idemKey]bool, len(stored))
	for _, k := range stored {
		isStored[idemKey{k.CustomerID, k.Key}] = true
	}
	fresh := make([]bool, n)
	for i, in := range ins {
		fresh[i] = isStored[idemKey{in.p.CustomerID, in.p.IdempotencyKey}]
	}
	return fresh, nil
}

// replays answers the checkouts (indexes used) whose key was stored before: the first
// order when the input is the same, IDEMPOTENCY_KEY_REUSED when it is not.
func replays(ctx context.Context, tx bun.IDB, ins []placeIn, used []int, out []placed, errs []error) error {
	if len(used) == 0 {
		return nil
	}
	uc, uk := make([]string, len(used)), make([]string, len(used))
	for j, i := range used {
		uc[j], uk[j] = ins[i].p.CustomerID, ins[i].p.IdempotencyKey
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
		p := ins[i].p
		j, ok := byKey[idemKey{p.CustomerID, p.IdempotencyKey}]
		switch {
		case !ok:
			// Stored and deleted again by a transaction that refused it: place it next time.
			errs[i] = fmt.Errorf("%w: a concurrent checkout with this key was refused; retry", checkout.ErrUnavailable)
		case !bytes.Equal(rows[j].RequestHash, p.RequestHash):
			errs[i] = checkout.Errorf(checkout.IdempotencyKeyReused, []string{"input", "idempotencyKey"}, "this idempotencyKey was used with other input; use a new key for a new checkout")
		default:
			o, err := loadOrder(ctx, tx, rows[j].OrderID, false)
			if err != nil {
				return err
			}
			if o == nil {
				return fmt.Errorf("idempotency key of customer %s names a missing order", p.CustomerID)
			}
			out[i] = placed{order: *o, replay: true}
		}
	}
	return nil
}

// linesOf returns what each keyed checkout asks for, with the input path of its lines:
// the request's lines, or its cart's, read under the cart's lock (carts locked in id
// order). A cart that is missing, another customer's, already checked out (also by an
// earlier checkout of this batch) or empty is that checkout's error.
func linesOf(ctx context.Context, tx bun.IDB, ins []placeIn, keyed []int, errs []error) ([]want, error) {
	wants := make([]want, len(ins))
	var cartIDs []string
	for _, i := range keyed {
		if c := ins[i].p.CartID; c != "" {
			cartIDs = append(cartIDs, c)
			continue
		}
		wants[i] = want{lines: ins[i].p.Lines, field: []string{"input", "items"}}
	}
	if len(cartIDs) == 0 {
		return wants, nil
	}
	var carts []struct {
		ID         string  `bun:"id"`
		CustomerID string  `bun:"customer_id"`
		OrderID    *string `bun:"order_id"`
	}
	if err := tx.NewRaw("SELECT id, customer_id, order_id FROM carts WHERE id IN (?) ORDER BY id FOR UPDATE",
		bun.List(cartIDs)).Scan(ctx, &carts); err != nil {
		return nil, fmt.Errorf("carts: %w", err)
	}
	var items []struct {
		CartID   string `bun:"cart_id"`
		SKU      string `bun:"sku"`
		Quantity int    `bun:"quantity"`
	}
	if err := tx.NewRaw(`SELECT cart_id, sku, quantity FROM cart_items WHERE cart_id IN (?)
		ORDER BY cart_id, added_at, sku`, bun.List(cartIDs)).Scan(ctx, &items); err != nil {
		return nil, fmt.Errorf("cart items: %w", err)
	}
	lines := map[string][]checkout.Line{}
	for _, it := range items {
		lines[it.CartID] = append(lines[it.CartID], checkout.Line{SKU: it.SKU, Quantity: it.Quantity})
	}
	taken := map[string]bool{}
	for _, c := range carts {
		taken[c.ID] = c.OrderID != nil
	}
	owner := map[string]string{}
	for _, c := range carts {
		owner[c.ID] = c.CustomerID
	}
	field := []string{"input", "cartId"}
	for _, i := range keyed {
		p := ins[i].p
		if p.CartID == "" {
			continue
		}
		who, ok := owner[p.CartID]
		switch {
		case !ok || who != p.CustomerID:
			errs[i] = checkout.Errorf(checkout.CartNotFound, field, "cart not found")
		case taken[p.CartID]:
			errs[i] = checkout.Errorf(checkout.CartNotFound, field, "cart was already checked out")
		case len(lines[p.CartID]) == 0:
			errs[i] = checkout.Errorf(checkout.CartEmpty, field, "cart is empty")
		default:
			taken[p.CartID] = true
			wants[i] = want{lines: lines[p.CartID], field: field}
		}
	}
	return wants, nil
}

// pricesOf reads the current price of each SKU (unknown SKUs are missing) and the
// limits of units per customer of those that have one.
//
// In the same statement it takes the customers' advisory locks whose keys are lock
// (customerLockClass; in lockOrder): its own read does not need them, and every
// statement after it sees what those customers' checkouts committed before (standings).
func pricesOf(ctx context.Context, tx bun.IDB, skus []string, lock []int32) (map[string]checkout.Price, map[string]int, error) {
	prices, limits := map[string]checkout.Price{}, map[string]int{}
	if len(skus) == 0 {
		return prices, limits, nil
	}
	var rows []struct {
		SKU        string `bun:"sku"`
		PriceCents int64  `bun:"price_cents"`
		Currency   string `bun:"currency"`
		MaxPer     *int   `bun:"max_per_customer"`
	}
	if err := tx.NewRaw(hotPrices.For(tx), pgArray(skus), customerLockClass, pgArray(lock)).Scan(ctx, &rows); err != nil {
		return nil, nil, fmt.Errorf("prices: %w", err)
	}
	for _, r := range rows {
		prices[r.SKU] = checkout.Price{Cents: r.PriceCents, Currency: r.Currency}
		if r.MaxPer != nil {
			limits[r.SKU] = *r.MaxPer
		}
	}
	return prices, limits, nil
}

// insertOrders writes orders and their items in one round trip, whatever their number;
// tokens[i] is orders[i]'s payment token.
func insertOrders(ctx context.Context, tx bun.IDB, orders []checkout.Order, tokens []string) error {
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
	var sc script
	sc.addHot(hotInsertOrders,
		pgArray(id), pgArray(cust), pgArray(total), pgArray(cur), pgArray(tok), pgArray(expires), pgArray(created))
	sc.addHot(hotInsertItems,
		pgArray(iOrder), pgArray(iLine), pgArray(iSKU), pgArray(iQty), pgArray(iUnit))
	if err := sc.exec(ctx, tx); err != nil {
		return fmt.Errorf("insert orders: %w", err)
	}
	return nil
}
