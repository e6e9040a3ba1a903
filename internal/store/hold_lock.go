package store

import (
	"context"
	"fmt"

	"github.com/uptrace/bun"

	"github.com/checkout-backend/checkout/internal/checkout"
)

// rowLock holds an allocation with row locks: SELECT ... FOR NO KEY UPDATE on every
// inventory row of the transaction's SKUs, taken once and in (sku, warehouse) order
// whatever the order of the lines, so two checkouts never deadlock. (NO KEY: the
// foreign-key checks of other transactions' reservations do not wait on it.) Database
// constraints (0 <= reserved <= on_hand) back it. The lock and batch strategies hold
// this way; the redis strategy too, after its Redis hold.
type rowLock struct{}

func (rowLock) admit(ctx context.Context, p checkout.PlaceOrder) (func(bool), error) {
	return admitAll(ctx, p)
}

func (rowLock) allocate(ctx context.Context, tx bun.Tx, wants []want) ([]allocation, []error, error) {
	levels, err := lockLevels(ctx, tx, skusOf(wants))
	if err != nil {
		return nil, nil, err
	}
	allocs, errs := allocateInOrder(levels, wants)
	return allocs, errs, nil
}

// lockLevels locks and reads the inventory rows of skus, in (sku, warehouse) order.
func lockLevels(ctx context.Context, tx bun.IDB, skus []string) ([]level, error) {
	var levels []level
	if err := tx.NewRaw(hotLockInventory.For(tx), pgArray(skus)).Scan(ctx, &levels); err != nil {
		return nil, fmt.Errorf("lock inventory: %w", err)
	}
	return levels, nil
}
