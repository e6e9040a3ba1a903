package analytics

import (
	"context"
	"fmt"

	"github.com/uptrace/bun"
)

// StockFromDB reads available units from the inventory table (one query per flush, on
// the background pool: never inside a checkout transaction).
func StockFromDB(db bun.IDB) StockReader {
	return func(ctx context.Context, skus []string) (map[string]int, error) {
		var rows []struct {
			SKU       string `bun:"sku"`
			Available int    `bun:"available"`
		}
		if err := db.NewRaw(`SELECT sku, sum(on_hand - reserved)::int AS available FROM inventory
			WHERE sku IN (?) GROUP BY sku`, bun.List(skus)).Scan(ctx, &rows); err != nil {
			return nil, fmt.Errorf("stock levels: %w", err)
		}
		out := make(map[string]int, len(rows))
		for _, r := range rows {
			out[r.SKU] = r.Available
		}
		return out, nil
	}
}
