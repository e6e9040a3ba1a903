package store

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"

	"github.com/checkout-backend/checkout/internal/checkout"
)

// Reserver is the reservation step of checkout, the one part that changes with the
// strategy (pessimistic row locks today; optimistic versions, a Redis hold or stock
// buckets later). Every method runs inside the caller's transaction.
type Reserver interface {
	// Reserve holds every line or returns a *checkout.Error (OUT_OF_STOCK) naming the
	// first line that cannot be served; field is the input path of the lines.
	Reserve(ctx context.Context, tx bun.Tx, orderID string, lines []checkout.Line, field []string, expiresAt time.Time) error
	// Sell turns the order's held stock into a sale: on_hand and reserved both go down.
	Sell(ctx context.Context, tx bun.Tx, orderID string) error
	// Release gives the order's held stock back to available.
	Release(ctx context.Context, tx bun.Tx, orderID string) error
	// Restock puts the units of a sold (paid, then cancelled) order back on hand.
	Restock(ctx context.Context, tx bun.Tx, orderID string) error
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
func (LockingReserver) Reserve(ctx context.Context, tx bun.Tx, orderID string, lines []checkout.Line, field []string, expiresAt time.Time) error {
	skus := make([]string, len(lines))
	for i, l := range lines {
		skus[i] = l.SKU
	}
	var levels []level
	if err := tx.NewRaw(`SELECT sku, warehouse, on_hand, reserved FROM inventory
		WHERE sku IN (?) ORDER BY sku, warehouse FOR UPDATE`, bun.In(skus)).Scan(ctx, &levels); err != nil {
		return fmt.Errorf("lock inventory: %w", err)
	}
	bySKU := map[string][]level{}
	for _, l := range levels {
		bySKU[l.SKU] = append(bySKU[l.SKU], l)
	}
	var aSKU, aWH []string
	var aQty []int
	for i, line := range lines {
		alloc, avail := Allocate(bySKU[line.SKU], line.Quantity)
		if alloc == nil {
			f := field
			if len(field) > 0 && field[len(field)-1] == "items" {
				f = append(append([]string{}, field...), strconv.Itoa(i), "quantity")
			}
			return checkout.Errorf(checkout.OutOfStock, f, "only %d of %s available, %d requested", avail, line.SKU, line.Quantity)
		}
		for wh, q := range alloc {
			aSKU, aWH, aQty = append(aSKU, line.SKU), append(aWH, wh), append(aQty, q)
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE inventory i SET reserved = i.reserved + v.q, updated_at = now()
		FROM unnest(?::text[], ?::text[], ?::int[]) AS v(sku, wh, q)
		WHERE i.sku = v.sku AND i.warehouse = v.wh`, pgdialect.Array(aSKU), pgdialect.Array(aWH), pgdialect.Array(aQty)); err != nil {
		return fmt.Errorf("reserve: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO reservations (order_id, sku, warehouse, quantity, expires_at)
		SELECT ?, v.sku, v.wh, v.q, ? FROM unnest(?::text[], ?::text[], ?::int[]) AS v(sku, wh, q)`,
		orderID, expiresAt, pgdialect.Array(aSKU), pgdialect.Array(aWH), pgdialect.Array(aQty)); err != nil {
		return fmt.Errorf("insert reservations: %w", err)
	}
	return nil
}

// Allocate splits qty over warehouses: from the one with the most available first, so a
// line that one warehouse can serve ships from one. It returns nil and the total
// available when the stock is short.
func Allocate(levels []level, qty int) (map[string]int, int) {
	ls := append([]level(nil), levels...)
	sort.SliceStable(ls, func(i, j int) bool {
		ai, aj := ls[i].OnHand-ls[i].Reserved, ls[j].OnHand-ls[j].Reserved
		if ai != aj {
			return ai > aj
		}
		return ls[i].Warehouse < ls[j].Warehouse
	})
	total := 0
	for _, l := range ls {
		total += l.OnHand - l.Reserved
	}
	if total < qty {
		return nil, total
	}
	out := map[string]int{}
	for _, l := range ls {
		if qty == 0 {
			break
		}
		take := min(l.OnHand-l.Reserved, qty)
		if take > 0 {
			out[l.Warehouse] = take
			qty -= take
		}
	}
	return out, total
}

// lockOrderInventory locks the inventory rows an order's reservations touch, in the
// same (sku, warehouse) order checkout uses.
func lockOrderInventory(ctx context.Context, tx bun.Tx, orderID, status string) error {
	_, err := tx.ExecContext(ctx, `SELECT 1 FROM inventory i WHERE (i.sku, i.warehouse) IN
		(SELECT sku, warehouse FROM reservations WHERE order_id = ? AND status = ?)
		ORDER BY i.sku, i.warehouse FOR UPDATE`, orderID, status)
	return err
}

// Sell implements Reserver.
func (LockingReserver) Sell(ctx context.Context, tx bun.Tx, orderID string) error {
	if err := lockOrderInventory(ctx, tx, orderID, "HELD"); err != nil {
		return fmt.Errorf("sell lock: %w", err)
	}
	_, err := tx.ExecContext(ctx, `WITH r AS (
			UPDATE reservations SET status = 'SOLD', updated_at = now()
			WHERE order_id = ? AND status = 'HELD' RETURNING sku, warehouse, quantity)
		UPDATE inventory i SET on_hand = i.on_hand - r.quantity, reserved = i.reserved - r.quantity, updated_at = now()
		FROM r WHERE i.sku = r.sku AND i.warehouse = r.warehouse`, orderID)
	if err != nil {
		return fmt.Errorf("sell: %w", err)
	}
	return nil
}

// Release implements Reserver.
func (LockingReserver) Release(ctx context.Context, tx bun.Tx, orderID string) error {
	if err := lockOrderInventory(ctx, tx, orderID, "HELD"); err != nil {
		return fmt.Errorf("release lock: %w", err)
	}
	_, err := tx.ExecContext(ctx, `WITH r AS (
			UPDATE reservations SET status = 'RELEASED', updated_at = now()
			WHERE order_id = ? AND status = 'HELD' RETURNING sku, warehouse, quantity)
		UPDATE inventory i SET reserved = i.reserved - r.quantity, updated_at = now()
		FROM r WHERE i.sku = r.sku AND i.warehouse = r.warehouse`, orderID)
	if err != nil {
		return fmt.Errorf("release: %w", err)
	}
	return nil
}

// Restock implements Reserver.
func (LockingReserver) Restock(ctx context.Context, tx bun.Tx, orderID string) error {
	if err := lockOrderInventory(ctx, tx, orderID, "SOLD"); err != nil {
		return fmt.Errorf("restock lock: %w", err)
	}
	_, err := tx.ExecContext(ctx, `WITH r AS (
			UPDATE reservations SET status = 'RELEASED', updated_at = now()
			WHERE order_id = ? AND status = 'SOLD' RETURNING sku, warehouse, quantity)
		UPDATE inventory i SET on_hand = i.on_hand + r.quantity, updated_at = now()
		FROM r WHERE i.sku = r.sku AND i.warehouse = r.warehouse`, orderID)
	if err != nil {
		return fmt.Errorf("restock: %w", err)
	}
	return nil
}

func pgArray(v any) any { return pgdialect.Array(v) }
