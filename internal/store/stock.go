package store

import (
	"context"
	"fmt"

	"github.com/uptrace/bun"

	"github.com/checkout-backend/checkout/internal/checkout"
)

// precheck answers OUT_OF_STOCK at once for a checkout of a SKU seen sold out, from a
// lock-free read (what committed transactions left), so refused buyers never queue on
// the row lock nor hold a connection through a transaction. A SKU that is available
// again (restocked, a reservation released) is cleared and the checkout goes on: no
// stale answer outlives a committed change. Cart checkouts go on (their lines are read
// in the transaction).
func (s *Orders) precheck(ctx context.Context, p checkout.PlaceOrder) error {
	if p.CartID != "" || s.strategy == StrategyRedis {
		return nil
	}
	var flagged []string
	for _, l := range p.Lines {
		if _, ok := s.soldOut.Load(l.SKU); ok {
			flagged = append(flagged, l.SKU)
		}
	}
	if len(flagged) == 0 {
		return nil
	}
	avail, err := Available(ctx, s.db, flagged)
	if err != nil {
		return nil // the transaction decides
	}
	for i, l := range p.Lines {
		a, ok := avail[l.SKU]
		if !ok {
			continue
		}
		if a >= l.Quantity {
			s.soldOut.Delete(l.SKU)
			continue
		}
		return checkout.OutOfStockError([]string{"input", "items"}, i, l.SKU, a, l.Quantity)
	}
	return nil
}

// noteOutOfStock flags the SKU of an OUT_OF_STOCK line that has nothing left.
func (s *Orders) noteOutOfStock(err error, p checkout.PlaceOrder) {
	e, ok := checkout.AsError(err)
	if !ok || e.Code != checkout.OutOfStock || p.CartID != "" {
		return
	}
	for i, l := range p.Lines {
		if len(e.Field) >= 3 && e.Field[2] == fmt.Sprint(i) {
			if avail, err := Available(context.Background(), s.db, []string{l.SKU}); err == nil && avail[l.SKU] == 0 {
				s.soldOut.Store(l.SKU, struct{}{})
			}
		}
	}
}

// Available reads what each SKU has left to reserve across its warehouses (every SKU
// when skus is nil), without a lock, from the stock_available view: the one definition
// of availability, which the catalog, the sold-out answers, the Redis counters and
// analytics all read.
func Available(ctx context.Context, db bun.IDB, skus []string) (map[string]int, error) {
	var rows []struct {
		SKU       string `bun:"sku"`
		Available int    `bun:"available"`
	}
	q := db.NewRaw("SELECT sku, available FROM stock_available")
	if skus != nil {
		q = db.NewRaw("SELECT sku, available FROM stock_available WHERE sku IN (?)", bun.List(skus))
	}
	if err := q.Scan(ctx, &rows); err != nil {
		return nil, mapErr(fmt.Errorf("available stock: %w", err))
	}
	out := make(map[string]int, len(rows))
	for _, r := range rows {
		out[r.SKU] = r.Available
	}
	return out, nil
}

// FoldSales folds the pending sales (stock_moves) into inventory: one update per
// inventory row for every sale since the last fold. It returns how many sales it folded.
func (m *Maintenance) FoldSales(ctx context.Context) (int64, error) {
	var n int64
	err := InTx(ctx, m.db, func(ctx context.Context, tx bun.Tx) error {
		var rows []struct {
			SKU       string `bun:"sku"`
			Warehouse string `bun:"warehouse"`
			Sold      int    `bun:"sold"`
			Moves     int64  `bun:"moves"`
		}
		if err := tx.NewRaw(`WITH m AS (DELETE FROM stock_moves RETURNING sku, warehouse, sold)
			SELECT sku, warehouse, sum(sold)::int AS sold, count(*) AS moves FROM m GROUP BY sku, warehouse ORDER BY sku, warehouse`).Scan(ctx, &rows); err != nil {
			return fmt.Errorf("fold sales: %w", err)
		}
		if len(rows) == 0 {
			return nil
		}
		sku, wh, sold := make([]string, len(rows)), make([]string, len(rows)), make([]int, len(rows))
		for i, r := range rows {
			sku[i], wh[i], sold[i] = r.SKU, r.Warehouse, r.Sold
			n += r.Moves
		}
		// Locked in the order checkout uses.
		if _, err := tx.ExecContext(ctx, `SELECT 1 FROM inventory WHERE (sku, warehouse) IN (SELECT * FROM unnest(?::text[], ?::text[]))
			ORDER BY sku, warehouse FOR NO KEY UPDATE`, pgArray(sku), pgArray(wh)); err != nil {
			return fmt.Errorf("fold sales lock: %w", err)
		}
		_, err := tx.ExecContext(ctx, `UPDATE inventory i SET on_hand = i.on_hand - v.sold, reserved = i.reserved - v.sold, updated_at = ?
			FROM unnest(?::text[], ?::text[], ?::int[]) AS v(sku, wh, sold) WHERE i.sku = v.sku AND i.warehouse = v.wh`,
			m.now(), pgArray(sku), pgArray(wh), pgArray(sold))
		return err
	})
	return n, err
}
