package checkout

import (
	"sort"
	"strconv"
)

// StockLevel is what one warehouse can still reserve of a SKU.
type StockLevel struct {
	Warehouse string
	Available int
}

// Allocate splits qty over warehouses, from the one with the most available first (ties
// by warehouse id), so a line that one warehouse can serve ships from one. It returns
// nil and the total available when the stock is short.
func Allocate(levels []StockLevel, qty int) (map[string]int, int) {
	ls := append([]StockLevel(nil), levels...)
	sort.SliceStable(ls, func(i, j int) bool {
		if ls[i].Available != ls[j].Available {
			return ls[i].Available > ls[j].Available
		}
		return ls[i].Warehouse < ls[j].Warehouse
	})
	total := 0
	for _, l := range ls {
		total += max(l.Available, 0)
	}
	if total < qty {
		return nil, total
	}
	out := map[string]int{}
	for _, l := range ls {
		if qty == 0 {
			break
		}
		if take := min(l.Available, qty); take > 0 {
			out[l.Warehouse] = take
			qty -= take
		}
	}
	return out, total
}

// OutOfStockError is the error of a line that cannot be served: field is the input path of
// the lines (input.items or input.cartId), i the line's index.
func OutOfStockError(field []string, i int, sku string, available, requested int) *Error {
	f := field
	if len(field) > 0 && field[len(field)-1] == "items" {
		f = append(append([]string{}, field...), strconv.Itoa(i), "quantity")
	}
	return Errorf(OutOfStock, f, "only %d of %s available, %d requested", max(available, 0), sku, requested)
}

// StockMove is what a status change does to an order's stock.
type StockMove int

// Stock moves.
const (
	// StockNone leaves the stock as it is.
	StockNone StockMove = iota
	// StockSell turns held units into a sale: on hand and reserved both go down.
	StockSell
	// StockRelease gives held units back to available.
	StockRelease
	// StockRestock puts the units of a sold order back on hand.
	StockRestock
)

// String names the move (logs, tests).
func (m StockMove) String() string {
	return [...]string{"none", "sell", "release", "restock"}[m]
}

// StockMoveFor is the stock move of a status change: paying sells the held units; any
// other end of an unpaid order releases them; cancelling a paid order restocks them.
func StockMoveFor(from, to Status) StockMove {
	switch {
	case from == StatusPendingPayment && to == StatusPaid:
		return StockSell
	case from == StatusPendingPayment && to != StatusPendingPayment:
		return StockRelease
	case from == StatusPaid && to == StatusCancelled:
		return StockRestock
	}
	return StockNone
}
