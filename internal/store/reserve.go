package store

import (
	"context"
	"fmt"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"

	"github.com/checkout-backend/checkout/internal/checkout"
)

// Hold is what a checkout asks the reservation step for: every line of one order, held
// until ExpiresAt.
type Hold struct {
	OrderID   string
	Lines     []checkout.Line
	Field     []string // input path of the lines, for OUT_OF_STOCK
	ExpiresAt time.Time
	Now       time.Time
}

// Reserver is the reservation step of checkout, the one part that changes with the
// strategy. Every method runs inside the caller's transaction (tx).
type Reserver interface {
	// Reserve holds every line of h or returns a *checkout.Error (OUT_OF_STOCK) naming
	// the first line that cannot be served.
	Reserve(ctx context.Context, tx bun.IDB, h Hold) error
	// Move makes the stock move a status change of the order asks for (sell, release
	// or restock its units).
	Move(ctx context.Context, tx bun.IDB, orderID string, m checkout.StockMove, now time.Time) error
}

// LockingReserver reserves with SELECT ... FOR UPDATE on the inventory rows, taken in
// (sku, warehouse) order whatever the order of the lines, so two checkouts never
// deadlock. Database constraints (0 <= reserved <= on_hand) back it.
type LockingReserver struct{}

type level struct {
	SKU       string `bun:"sku"`
	Warehouse string `bun:"warehouse"`
	OnHand    int    `bun:"on_hand"`
	Reserved  int    `bun:"reserved"`
}

// Reserve implements Reserver.
func (LockingReserver) Reserve(ctx context.Context, tx bun.IDB, h Hold) error {
	skus := make([]string, len(h.Lines))
	for i, l := range h.Lines {
		skus[i] = l.SKU
	}
	var levels []level
	if err := tx.NewRaw(`SELECT sku, warehouse, on_hand, reserved FROM inventory
		WHERE sku IN (?) ORDER BY sku, warehouse FOR UPDATE`, bun.In(skus)).Scan(ctx, &levels); err != nil {
		return fmt.Errorf("lock inventory: %w", err)
	}
	bySKU := map[string][]checkout.StockLevel{}
	for _, l := range levels {
		bySKU[l.SKU] = append(bySKU[l.SKU], checkout.StockLevel{Warehouse: l.Warehouse, Available: l.OnHand - l.Reserved})
	}
	var aSKU, aWH []string
	var aQty []int
	for i, line := range h.Lines {
		alloc, avail := checkout.Allocate(bySKU[line.SKU], line.Quantity)
		if alloc == nil {
			return checkout.OutOfStockError(h.Field, i, line.SKU, avail, line.Quantity)
		}
		for wh, q := range alloc {
			aSKU, aWH, aQty = append(aSKU, line.SKU), append(aWH, wh), append(aQty, q)
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE inventory i SET reserved = i.reserved + v.q, updated_at = ?
		FROM unnest(?::text[], ?::text[], ?::int[]) AS v(sku, wh, q)
		WHERE i.sku = v.sku AND i.warehouse = v.wh`, h.Now, pgArray(aSKU), pgArray(aWH), pgArray(aQty)); err != nil {
		return fmt.Errorf("reserve: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO reservations (order_id, sku, warehouse, quantity, expires_at, created_at, updated_at)
		SELECT ?, v.sku, v.wh, v.q, ?, ?, ? FROM unnest(?::text[], ?::text[], ?::int[]) AS v(sku, wh, q)`,
		h.OrderID, h.ExpiresAt, h.Now, h.Now, pgArray(aSKU), pgArray(aWH), pgArray(aQty)); err != nil {
		return fmt.Errorf("insert reservations: %w", err)
	}
	return nil
}

// stockMoves are the statements of each move: the reservations of the order in status
// "from" become "to", and the inventory rows change by their quantities.
var stockMoves = map[checkout.StockMove]struct{ from, to, inventory string }{
	checkout.StockSell:    {"HELD", "SOLD", "on_hand = i.on_hand - r.quantity, reserved = i.reserved - r.quantity"},
	checkout.StockRelease: {"HELD", "RELEASED", "reserved = i.reserved - r.quantity"},
	checkout.StockRestock: {"SOLD", "RELEASED", "on_hand = i.on_hand + r.quantity"},
}

// Move implements Reserver: it locks the order's inventory rows in the order checkout
// uses, then moves the reservations and the stock.
func (LockingReserver) Move(ctx context.Context, tx bun.IDB, orderID string, m checkout.StockMove, now time.Time) error {
	mv, ok := stockMoves[m]
	if !ok {
		return nil
	}
	if _, err := tx.ExecContext(ctx, `SELECT 1 FROM inventory i WHERE (i.sku, i.warehouse) IN
		(SELECT sku, warehouse FROM reservations WHERE order_id = ? AND status = ?)
		ORDER BY i.sku, i.warehouse FOR UPDATE`, orderID, mv.from); err != nil {
		return fmt.Errorf("%s lock: %w", m, err)
	}
	_, err := tx.ExecContext(ctx, `WITH r AS (
			UPDATE reservations SET status = ?, updated_at = ?
			WHERE order_id = ? AND status = ? RETURNING sku, warehouse, quantity)
		UPDATE inventory i SET `+mv.inventory+`, updated_at = ?
		FROM r WHERE i.sku = r.sku AND i.warehouse = r.warehouse`, mv.to, now, orderID, mv.from, now)
	if err != nil {
		return fmt.Errorf("%s: %w", m, err)
	}
	return nil
}

func pgArray(v any) any { return pgdialect.Array(v) }
