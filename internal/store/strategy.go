package store

import (
	"context"
	"fmt"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"

	"github.com/checkout-backend/checkout/internal/checkout"
)

// Strategy names a reservation strategy (RESERVATION_STRATEGY; README "Reservation
// strategies"). Every strategy runs the one write path (place.go); a strategy is two
// choices in it: how an allocation is held (a holder: row lock, compare-and-set, or a
// Redis hold before the row lock) and how many callers share a transaction (one, or a
// group of concurrent callers).
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

// want is what one order of a checkout transaction asks the holder for: every line,
// all or none.
type want struct {
	lines []checkout.Line
	field []string // input path of the lines, for OUT_OF_STOCK
}

// holder is how a strategy holds an allocation: the one part of the write path that
// changes with the strategy (hold_lock.go, hold_cas.go, hold_redis.go).
type holder interface {
	// admit runs before the transaction, for one checkout: it may refuse it at once
	// (OUT_OF_STOCK) or hold its units elsewhere; done is told whether the order was
	// placed once that is known, and gives back what admit held when it was not.
	admit(ctx context.Context, p checkout.PlaceOrder) (done func(placed bool), err error)
	// allocate decides, in tx and in arrival order, which units of which warehouse each
	// order takes (or its OUT_OF_STOCK in errs), and holds the inventory rows it read so
	// the decision stands until commit. It writes nothing: the write path adds the
	// allocations to the reserved units in the transaction's last round trip.
	allocate(ctx context.Context, tx bun.Tx, wants []want) (allocs []allocation, errs []error, err error)
}

// admitAll is the admit of the holders that hold nothing before the transaction.
func admitAll(context.Context, checkout.PlaceOrder) (func(bool), error) { return func(bool) {}, nil }

// level is one inventory row as a holder reads it.
type level struct {
	SKU       string `bun:"sku"`
	Warehouse string `bun:"warehouse"`
	OnHand    int    `bun:"on_hand"`
	Reserved  int    `bun:"reserved"`
	Version   int64  `bun:"version"`
}

// allocation is the units one order (or, summed, a transaction) takes from each
// (sku, warehouse).
type allocation struct {
	sku, warehouse []string
	qty            []int
}

func (a *allocation) add(sku, wh string, q int) {
	a.sku, a.warehouse, a.qty = append(a.sku, sku), append(a.warehouse, wh), append(a.qty, q)
}

// allocateInOrder decides each order's allocation from levels, in arrival order, each
// order taking from what the ones before it left; it changes nothing in the database.
func allocateInOrder(levels []level, wants []want) ([]allocation, []error) {
	avail := map[string][]checkout.StockLevel{}
	for _, l := range levels {
		avail[l.SKU] = append(avail[l.SKU], checkout.StockLevel{Warehouse: l.Warehouse, Available: l.OnHand - l.Reserved})
	}
	allocs, errs := make([]allocation, len(wants)), make([]error, len(wants))
	for i, w := range wants {
		var a allocation
		for j, line := range w.lines {
			split, left := checkout.Allocate(avail[line.SKU], line.Quantity)
			if split == nil {
				errs[i] = checkout.OutOfStockError(w.field, j, line.SKU, left, line.Quantity)
				break
			}
			for wh, q := range split {
				a.add(line.SKU, wh, q)
			}
		}
		if errs[i] != nil {
			continue
		}
		for k := range a.sku {
			for n := range avail[a.sku[k]] {
				if avail[a.sku[k]][n].Warehouse == a.warehouse[k] {
					avail[a.sku[k]][n].Available -= a.qty[k]
				}
			}
		}
		allocs[i] = a
	}
	return allocs, errs
}

// skusOf lists the distinct SKUs the orders ask for.
func skusOf(wants []want) []string {
	seen := map[string]bool{}
	var skus []string
	for _, w := range wants {
		for _, l := range w.lines {
			if !seen[l.SKU] {
				seen[l.SKU] = true
				skus = append(skus, l.SKU)
			}
		}
	}
	return skus
}

func pgArray(v any) any { return pgdialect.Array(v) }
