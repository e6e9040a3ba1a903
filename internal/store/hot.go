package store

import (
	"github.com/checkout-backend/checkout/internal/pgprep"
	"github.com/checkout-backend/checkout/outbox"
)

// The statements of a paid order's path, prepared on every connection of a pool that
// talks to PostgreSQL directly (pgprep): PostgreSQL parses and plans each once per
// connection instead of once per call. Each takes bun placeholders; a list is an array
// (= ANY(?::text[])), never bun.List, so the text is the same whatever its length.
// TestHotStatements_PrepareOnTheMigratedSchema prepares each against the migrations.

// The checkout (place.go, limits.go, hold_lock.go).
var (
	hotClaimKeys = pgprep.New("place_claim_keys", `INSERT INTO idempotency_keys (customer_id, key, request_hash, order_id, created_at)
	SELECT * FROM unnest(?::text[], ?::text[], ?::bytea[], ?::uuid[], ?::timestamptz[])
	ON CONFLICT DO NOTHING RETURNING customer_id, key`)
	// The prices, and the customers' locks (pricesOf): a condition that names no column
	// of products is evaluated once, before the scan, whatever it finds.
	hotPrices = pgprep.New("place_prices", `SELECT sku, price_cents, currency, max_per_customer FROM products WHERE sku = ANY(?::text[])
	AND (SELECT count(*) FROM (SELECT pg_advisory_xact_lock(?::int, k) FROM unnest(?::int[]) AS u(k)) AS l) >= 0`)
	hotLockCustomers = pgprep.New("place_lock_customers",
		"SELECT pg_advisory_xact_lock(?::int, k) FROM unnest(?::int[]) AS u(k)")
	hotStandingCounts = pgprep.New("place_standing_counts", standingCounts)
	hotStandingHeld   = pgprep.New("place_standing_held", standingHeld)
	hotStandings      = pgprep.New("place_standings", standingCounts+"\n\tUNION ALL\n\t"+standingHeld)
	hotInsertOrders   = pgprep.New("place_insert_orders", `INSERT INTO orders (id, customer_id, status, total_cents, currency,
	payment_token, reservation_expires_at, event_seq, created_at, updated_at)
	SELECT v.id, v.cust, 'PENDING_PAYMENT', v.total, v.cur, v.tok, v.exp, 1, v.at, v.at
	FROM unnest(?::uuid[], ?::text[], ?::bigint[], ?::text[], ?::text[], ?::timestamptz[], ?::timestamptz[]) AS v(id, cust, total, cur, tok, exp, at)`)
	hotInsertItems = pgprep.New("place_insert_items", `INSERT INTO order_items (order_id, line_no, sku, quantity, unit_price_cents)
	SELECT * FROM unnest(?::uuid[], ?::int[], ?::text[], ?::int[], ?::bigint[])`)
	hotLockInventory = pgprep.New("place_lock_inventory", `SELECT sku, warehouse, on_hand, reserved, version FROM inventory
	WHERE sku = ANY(?::text[]) ORDER BY sku, warehouse FOR NO KEY UPDATE`)
	hotReserve = pgprep.New("place_reserve", `UPDATE inventory i SET reserved = i.reserved + v.q, version = i.version + 1, updated_at = ?::timestamptz
	FROM (SELECT sku, wh, sum(q)::int AS q FROM unnest(?::text[], ?::text[], ?::int[]) AS u(sku, wh, q) GROUP BY sku, wh) AS v
	WHERE i.sku = v.sku AND i.warehouse = v.wh`)
	hotInsertReservations = pgprep.New("place_insert_reservations", `INSERT INTO reservations (order_id, sku, warehouse, quantity, expires_at, created_at, updated_at)
	SELECT o, sku, wh, q, e, a, a FROM unnest(?::uuid[], ?::text[], ?::text[], ?::int[], ?::timestamptz[], ?::timestamptz[]) AS v(o, sku, wh, q, e, a)`)
	hotCloseCarts = pgprep.New("place_close_carts", `UPDATE carts c SET order_id = v.o, updated_at = v.at FROM unnest(?::uuid[], ?::uuid[], ?::timestamptz[]) AS v(o, c, at)
	WHERE c.id = v.c`)
)

// The payment (payments.go), an order's changes (changes.go) and the webhook fan-out's
// read (webhooks.go).
var (
	hotMarkProcessed = pgprep.New("inbox_mark", "INSERT INTO inbox (consumer, event_id, processed_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING")
	hotBeginCharges  = pgprep.New("pay_begin_charges", `WITH o AS (
	  SELECT id, status, total_cents, currency, reservation_expires_at, COALESCE(payment_token, '') AS token
	  FROM orders WHERE id = ANY(?::uuid[])),
	ins AS (
	  INSERT INTO payments (order_id, provider, amount_cents, currency, status, created_at, updated_at)
	  SELECT o.id, v.p, o.total_cents, o.currency, ?::text, v.at, v.at
	  FROM o JOIN unnest(?::uuid[], ?::text[], ?::timestamptz[]) AS v(id, p, at) ON v.id = o.id
	  WHERE o.status = ? AND o.token <> '' AND (o.reservation_expires_at IS NULL OR o.reservation_expires_at >= v.at)
	    AND `+outbox.NoFlushWait+`
	  ON CONFLICT (order_id) DO NOTHING)
	SELECT * FROM o`)
	hotRecordAttempts = pgprep.New("pay_record_attempts", `INSERT INTO payments (order_id, provider, amount_cents, currency, status, created_at, updated_at)
	SELECT o, p, a, c, ?::text, ?::timestamptz, ?::timestamptz FROM unnest(?::uuid[], ?::text[], ?::bigint[], ?::text[]) AS v(o, p, a, c)
	WHERE `+outbox.NoFlushWait+`
	ON CONFLICT (order_id) DO NOTHING`)
	hotSettle = pgprep.New("pay_settle", `WITH req AS (SELECT * FROM unnest(?::text[], ?::text[], ?::uuid[]) WITH ORDINALITY AS r(consumer, event_id, order_id, n)),
	ins AS (INSERT INTO inbox (consumer, event_id, processed_at)
	SELECT req.consumer, req.event_id, ?::timestamptz FROM req WHERE EXISTS (SELECT 1 FROM orders x WHERE x.id = req.order_id AND x.id = ANY(?::uuid[]))
	ON CONFLICT DO NOTHING RETURNING consumer, event_id)
	SELECT req.n - 1 AS n, EXISTS (SELECT 1 FROM ins WHERE ins.consumer = req.consumer AND ins.event_id = req.event_id) AS first,
	o.id, o.customer_id, o.status, o.total_cents, o.currency, o.reservation_expires_at,
	o.tracking_number, o.payment_failure_reason, o.event_seq, o.created_at, o.updated_at,
	(SELECT json_agg(json_build_object('sku', i.sku, 'quantity', i.quantity, 'unitPriceCents', i.unit_price_cents) ORDER BY i.line_no)
	 FROM order_items i WHERE i.order_id = o.id) AS items,
	(SELECT pay.status FROM payments pay WHERE pay.order_id = o.id) AS pay_status
	FROM req JOIN orders o ON o.id = req.order_id WHERE o.id = ANY(?::uuid[]) ORDER BY o.id FOR UPDATE OF o`)
	hotSell = pgprep.New("change_sell", `WITH r AS (
	UPDATE reservations r SET status = 'SOLD', updated_at = v.at
	FROM unnest(?::uuid[], ?::timestamptz[]) AS v(id, at)
	WHERE r.order_id = v.id AND r.status = 'HELD' AND r.order_id = ANY(?::uuid[]) RETURNING r.sku, r.warehouse, r.quantity, v.at)
	INSERT INTO stock_moves (sku, warehouse, sold, created_at) SELECT sku, warehouse, quantity, at FROM r`)
	hotLockReturned = pgprep.New("change_lock_returned", `SELECT 1 FROM inventory i WHERE (i.sku, i.warehouse) IN
	(SELECT sku, warehouse FROM reservations WHERE order_id = ANY(?::uuid[]) AND status = 'HELD'
	 UNION ALL SELECT sku, warehouse FROM reservations WHERE order_id = ANY(?::uuid[]) AND status = 'SOLD')
	ORDER BY i.sku, i.warehouse FOR NO KEY UPDATE`)
	hotRelease      = pgprep.New("change_release", returnStock("reserved = i.reserved - r.q"))
	hotRestock      = pgprep.New("change_restock", returnStock("on_hand = i.on_hand + r.q")) // a pending sale folds in later
	hotUpdateOrders = pgprep.New("change_orders", `UPDATE orders o SET status = v.status, updated_at = v.at, event_seq = v.seq,
	tracking_number = v.tracking, payment_failure_reason = v.reason,
	payment_token = CASE WHEN v.status = 'PENDING_PAYMENT' THEN o.payment_token END
	FROM unnest(?::uuid[], ?::text[], ?::text[], ?::timestamptz[], ?::int[], ?::text[], ?::text[]) AS v(id, status, from_status, at, seq, tracking, reason)
	WHERE o.id = v.id AND o.status = v.from_status AND o.id = ANY(?::uuid[])`)
	hotWantedEvents   = pgprep.New("webhooks_wanted", "SELECT events FROM webhooks WHERE deleted_at IS NULL")
	hotRecordPayments = pgprep.New("change_payments", `INSERT INTO payments (order_id, provider, provider_payment_id, amount_cents, currency, status, failure_reason, created_at, updated_at)
	SELECT o, p, pid, a, c, s, r, t, t FROM unnest(?::uuid[], ?::text[], ?::text[], ?::bigint[], ?::text[], ?::text[], ?::text[], ?::timestamptz[])
	AS v(o, p, pid, a, c, s, r, t)
	ON CONFLICT (order_id) DO UPDATE SET provider_payment_id = COALESCE(EXCLUDED.provider_payment_id, payments.provider_payment_id),
	amount_cents = EXCLUDED.amount_cents, currency = EXCLUDED.currency,
	status = EXCLUDED.status, failure_reason = EXCLUDED.failure_reason, updated_at = EXCLUDED.updated_at`)
)

// A customer's standing: unpaid orders and failed payments since a time (customers
// with a service-wide bound), and the units of limited SKUs they hold.
const (
	standingCounts = `SELECT c.id AS customer_id, '' AS sku,
		(SELECT count(*) FROM orders o WHERE o.customer_id = c.id AND o.status = 'PENDING_PAYMENT')::int AS unpaid,
		(SELECT count(*) FROM orders o WHERE o.customer_id = c.id AND o.status = 'PAYMENT_FAILED' AND o.updated_at >= c.since)::int AS failed,
		0 AS held
	FROM unnest(?::text[], ?::timestamptz[]) AS c(id, since)`
	standingHeld = `SELECT o.customer_id, i.sku, 0 AS unpaid, 0 AS failed, sum(i.quantity)::int AS held
	FROM orders o JOIN order_items i ON i.order_id = o.id
	WHERE o.customer_id = ANY(?::text[]) AND o.status IN ('PENDING_PAYMENT', 'PAID', 'SHIPPED') AND i.sku = ANY(?::text[])
	GROUP BY o.customer_id, i.sku`
)

// returnStock is the statement that gives an order's units back: its reservations in
// status ? become ?, and change is applied to their inventory rows.
func returnStock(change string) string {
	return `WITH r AS (
		UPDATE reservations r SET status = ?, updated_at = v.at
		FROM unnest(?::uuid[], ?::timestamptz[]) AS v(id, at)
		WHERE r.order_id = v.id AND r.status = ? AND r.order_id = ANY(?::uuid[]) RETURNING r.sku, r.warehouse, r.quantity, v.at),
	t AS (SELECT sku, warehouse, sum(quantity)::int AS q, max(at) AS at FROM r GROUP BY sku, warehouse)
	UPDATE inventory i SET ` + change + `, version = i.version + 1, updated_at = r.at
	FROM t AS r WHERE i.sku = r.sku AND i.warehouse = r.warehouse`
}
