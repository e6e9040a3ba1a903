package store

import (
	"context"
	"fmt"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"

	"github.com/checkout-backend/checkout/internal/checkout"
)

// Strategy names a reservation strategy (RESERVATION_STRATEGY; README "Reservation
// strategies").
type Strategy string

// The reservation strategies.
const (
	// StrategyLock locks the inventory rows (SELECT ... FOR NO KEY UPDATE), one
	// transaction per checkout.
	StrategyLock Strategy = "lock"
	// StrategyOptimistic reads without a lock and compares-and-sets a version, retrying
	// a bounded number of times with jitter.
	StrategyOptimistic Strategy = "optimistic"
	// StrategyRedis admits a checkout with an atomic Lua hold in Redis first, then
	// commits the order in PostgreSQL (whose constraints stay the last word).
	StrategyRedis Strategy = "redis"
	// StrategyBatch groups concurrent checkouts into one transaction (group commit):
	// one lock hold and one WAL flush for many orders.
	StrategyBatch Strategy = "batch"
)

// Strategies lists every strategy, the default first.
var Strategies = []Strategy{StrategyBatch, StrategyLock, StrategyOptimistic, StrategyRedis}

// ParseStrategy checks a RESERVATION_STRATEGY value.
func ParseStrategy(s string) (Strategy, error) {
	for _, st := range Strategies {
		if string(st) == s {
			return st, nil
		}
	}
	return "", fmt.Errorf("unknown reservation strategy %q (want batch, lock, optimistic or redis)", s)
}

// Hold is what a checkout asks the reservation step for: every line of one order, held
// until ExpiresAt.
type Hold struct {
	OrderID   string
	Lines     []checkout.Line
	Field     []string // input path of the lines, for OUT_OF_STOCK
	ExpiresAt time.Time
	Now       time.Time
}

// Reserver is the reservation step of a single-order checkout, the part that changes
// with the strategy. It runs inside the caller's transaction (tx).
type Reserver interface {
	// Reserve holds every line of h or returns a *checkout.Error (OUT_OF_STOCK) naming
	// the first line that cannot be served.
	Reserve(ctx context.Context, tx bun.IDB, h Hold) error
}

// LockingReserver reserves with SELECT ... FOR NO KEY UPDATE on the inventory rows,
// taken in (sku, warehouse) order whatever the order of the lines, so two checkouts
// never deadlock. (NO KEY: the foreign-key checks of other transactions' reservations
// do not wait on it.) Database constraints (0 <= reserved <= on_hand) back it.
type LockingReserver struct{}

type level struct {
	SKU       string `bun:"sku"`
	Warehouse string `bun:"warehouse"`
	OnHand    int    `bun:"on_hand"`
	Reserved  int    `bun:"reserved"`
	Version   int64  `bun:"version"`
}

func skusOf(lines []checkout.Line) []string {
	skus := make([]string, len(lines))
	for i, l := range lines {
		skus[i] = l.SKU
	}
	return skus
}

// allocation is the units one order takes from each (sku, warehouse).
type allocation struct {
	sku, warehouse []string
	qty            []int
}

func (a *allocation) add(sku, wh string, q int) {
	a.sku, a.warehouse, a.qty = append(a.sku, sku), append(a.warehouse, wh), append(a.qty, q)
}

// allocate decides an order's allocation from levels (by SKU); it changes nothing.
func allocate(levels map[string][]checkout.StockLevel, h Hold) (allocation, error) {
	var a allocation
	for i, line := range h.Lines {
		alloc, avail := checkout.Allocate(levels[line.SKU], line.Quantity)
		if alloc == nil {
			return allocation{}, checkout.OutOfStockError(h.Field, i, line.SKU, avail, line.Quantity)
		}
		for wh, q := range alloc {
			a.add(line.SKU, wh, q)
		}
	}
	return a, nil
}

func levelsBySKU(levels []level) map[string][]checkout.StockLevel {
	out := map[string][]checkout.StockLevel{}
	for _, l := range levels {
		out[l.SKU] = append(out[l.SKU], checkout.StockLevel{Warehouse: l.Warehouse, Available: l.OnHand - l.Reserved})
	}
	return out
}

// Reserve implements Reserver.
func (LockingReserver) Reserve(ctx context.Context, tx bun.IDB, h Hold) error {
	var levels []level
	if err := tx.NewRaw(`SELECT sku, warehouse, on_hand, reserved FROM inventory
		WHERE sku IN (?) ORDER BY sku, warehouse FOR NO KEY UPDATE`, bun.In(skusOf(h.Lines))).Scan(ctx, &levels); err != nil {
		return fmt.Errorf("lock inventory: %w", err)
	}
	a, err := allocate(levelsBySKU(levels), h)
	if err != nil {
		return err
	}
	if err := addReserved(ctx, tx, a, h.Now); err != nil {
		return err
	}
	return insertReservations(ctx, tx, h.OrderID, a, h.ExpiresAt, h.Now)
}

func addReserved(ctx context.Context, tx bun.IDB, a allocation, now time.Time) error {
	if _, err := tx.ExecContext(ctx, `UPDATE inventory i SET reserved = i.reserved + v.q, version = i.version + 1, updated_at = ?
		FROM (SELECT sku, wh, sum(q)::int AS q FROM unnest(?::text[], ?::text[], ?::int[]) AS u(sku, wh, q) GROUP BY sku, wh) AS v
		WHERE i.sku = v.sku AND i.warehouse = v.wh`, now, pgArray(a.sku), pgArray(a.warehouse), pgArray(a.qty)); err != nil {
		return fmt.Errorf("reserve: %w", err)
	}
	return nil
}

func insertReservations(ctx context.Context, tx bun.IDB, orderID string, a allocation, expires, now time.Time) error {
	if _, err := tx.ExecContext(ctx, `INSERT INTO reservations (order_id, sku, warehouse, quantity, expires_at, created_at, updated_at)
		SELECT ?, v.sku, v.wh, v.q, ?, ?, ? FROM unnest(?::text[], ?::text[], ?::int[]) AS v(sku, wh, q)`,
		orderID, expires, now, now, pgArray(a.sku), pgArray(a.warehouse), pgArray(a.qty)); err != nil {
		return fmt.Errorf("insert reservations: %w", err)
	}
	return nil
}

func pgArray(v any) any { return pgdialect.Array(v) }
