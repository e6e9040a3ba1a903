package store

import (
	"context"
	"fmt"
	"hash/fnv"
	"slices"
	"time"

	"github.com/uptrace/bun"

	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/pgprep"
)

// customerLockClass is the first key of the transaction-scoped advisory locks a checkout
// takes on its customers (the second is a hash of the customer id): a class of its own,
// so no other advisory lock of the database shares them. Two customers whose ids hash
// alike only wait for each other.
const customerLockClass = 0x43555354 // "CUST"

// customerLockKey is a customer's advisory lock key within customerLockClass.
func customerLockKey(customerID string) int32 {
	h := fnv.New32a()
	h.Write([]byte(customerID))
	return int32(h.Sum32())
}

// lockOrder sorts customers' lock keys and drops repeats: every checkout takes its
// customers' locks in this order, in one statement, so no two deadlock on them.
func lockOrder(keys []int32) []int32 {
	slices.Sort(keys)
	return slices.Compact(keys)
}

// standings takes, in the checkout transaction, a lock on each customer of the checkouts
// cand whose order must be checked against a purchase limit (a service-wide bound in
// PlaceOrder.Bounds, or a line of a SKU in limits), then reads what those customers
// hold, in one statement: their unpaid orders, their failed payments since their window
// began and the units of limited SKUs in their open and paid orders. The lock makes concurrent
// checkouts of one customer, on any instance and with any strategy, decide one after
// the other: each reads (in a statement after the lock, so with a snapshot that sees
// every checkout of that customer committed before) what the ones before it placed.
// Everything else that changes these counts (payments, cancellations, expiries) only
// lowers them. Locks are taken in key order, after the keys and carts and before the
// inventory rows, as every checkout takes them, so no two checkouts deadlock.
// Customers that need no check are absent from the answer.
//
// locked are the keys the transaction holds already (pricesOf takes them with the
// prices when the checkouts have service-wide bounds, so every customer of cand is
// among them); then standings takes no lock, and its read is the round trip's only
// statement.
func standings(ctx context.Context, tx bun.IDB, ins []placeIn, cand []int, wants []want, limits map[string]int, locked []int32) (map[string]*checkout.Standing, error) {
	since := map[string]time.Time{} // customers with a service-wide bound: the window's start
	limited := map[string]bool{}    // customers with a line of a limited SKU
	var skus []string
	for _, i := range cand {
		p := ins[i].p
		if p.Bounds.Any() {
			if s, ok := since[p.CustomerID]; !ok || p.Bounds.FailedSince.Before(s) {
				since[p.CustomerID] = p.Bounds.FailedSince
			}
		}
		for _, l := range wants[i].lines {
			if limits[l.SKU] > 0 {
				limited[p.CustomerID] = true
				if !slices.Contains(skus, l.SKU) {
					skus = append(skus, l.SKU)
				}
			}
		}
	}
	out := map[string]*checkout.Standing{}
	var keys []int32
	for c := range since {
		out[c] = &checkout.Standing{Held: map[string]int{}}
	}
	for c := range limited {
		out[c] = &checkout.Standing{Held: map[string]int{}}
	}
	if len(out) == 0 {
		return out, nil
	}
	for c := range out {
		if k := customerLockKey(c); !slices.Contains(locked, k) {
			keys = append(keys, k)
		}
	}
	if keys = lockOrder(keys); len(keys) > 0 {
		if _, err := tx.ExecContext(ctx, hotLockCustomers.For(tx), customerLockClass, pgArray(keys)); err != nil {
			return nil, fmt.Errorf("lock customers: %w", err)
		}
	}
	// One statement, after the lock's: each customer's unpaid orders and failed payments
	// (customers with a service-wide bound), then the units of limited SKUs they hold.
	custs, starts := make([]string, 0, len(since)), make([]time.Time, 0, len(since))
	for c, s := range since {
		custs, starts = append(custs, c), append(starts, s.UTC())
	}
	holders := make([]string, 0, len(limited))
	for c := range limited {
		holders = append(holders, c)
	}
	var rows []struct {
		CustomerID string `bun:"customer_id"`
		SKU        string `bun:"sku"`
		Unpaid     int    `bun:"unpaid"`
		Failed     int    `bun:"failed"`
		Held       int    `bun:"held"`
	}
	// Only the part that is needed: planning the union cost several times the counts
	// alone (a checkout of no limited SKU) when every call was planned, as every call
	// still is behind a transaction pooler, where nothing is prepared.
	var q *pgprep.Statement
	var args []any
	switch {
	case len(custs) > 0 && len(holders) > 0:
		q, args = hotStandings, []any{pgArray(custs), pgArray(starts), pgArray(holders), pgArray(skus)}
	case len(custs) > 0:
		q, args = hotStandingCounts, []any{pgArray(custs), pgArray(starts)}
	default:
		q, args = hotStandingHeld, []any{pgArray(holders), pgArray(skus)}
	}
	if err := tx.NewRaw(q.For(tx), args...).Scan(ctx, &rows); err != nil {
		return nil, fmt.Errorf("customers' orders: %w", err)
	}
	for _, r := range rows {
		if r.SKU == "" {
			out[r.CustomerID].Unpaid, out[r.CustomerID].FailedPayments = r.Unpaid, r.Failed
		} else {
			out[r.CustomerID].Held[r.SKU] = r.Held
		}
	}
	return out, nil
}
