package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/uptrace/bun"

	"github.com/checkout-backend/checkout/internal/checkout"
)

// OptimisticReserver reads the inventory rows without a lock, decides the allocation,
// then compares-and-sets each row's version without waiting (a row another checkout
// holds or changed loses the attempt); it tries again (in a savepoint), up to MaxAttempts times with jittered
// waits, and then takes the row lock (LockingReserver), so no checkout starves. On a
// hot SKU most attempts lose: OnRetry counts them (the benchmark prints them). Database
// constraints stay the last word.
type OptimisticReserver struct {
	// MaxAttempts bounds the optimistic tries (default 8).
	MaxAttempts int
	// OnRetry, when set, is told each lost compare-and-set.
	OnRetry func()
}

// errVersionMoved is a lost compare-and-set.
var errVersionMoved = errors.New("inventory changed since it was read")

// Reserve implements Reserver.
func (r OptimisticReserver) Reserve(ctx context.Context, tx bun.IDB, h Hold) error {
	max := r.MaxAttempts
	if max <= 0 {
		max = 8
	}
	for attempt := 1; ; attempt++ {
		err := InTx(ctx, tx, func(ctx context.Context, sp bun.Tx) error { return r.try(ctx, sp, h) })
		if err == nil || checkout.ErrorCode(err) != "" {
			return err
		}
		if !errors.Is(err, errVersionMoved) && !retryable(err) {
			return err
		}
		if r.OnRetry != nil {
			r.OnRetry()
		}
		if attempt >= max {
			return LockingReserver{}.Reserve(ctx, tx, h)
		}
		wait := time.Duration(rand.Int64N(int64(time.Millisecond) << min(attempt, 5)))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

func (r OptimisticReserver) try(ctx context.Context, tx bun.IDB, h Hold) error {
	var levels []level
	if err := tx.NewRaw(`SELECT sku, warehouse, on_hand, reserved, version FROM inventory
		WHERE sku IN (?) ORDER BY sku, warehouse`, bun.In(skusOf(h.Lines))).Scan(ctx, &levels); err != nil {
		return fmt.Errorf("read inventory: %w", err)
	}
	a, err := allocate(levelsBySKU(levels), h)
	if err != nil {
		return err
	}
	version := map[[2]string]int64{}
	for _, l := range levels {
		version[[2]string{l.SKU, l.Warehouse}] = l.Version
	}
	versions := make([]int64, len(a.sku))
	for i := range a.sku {
		versions[i] = version[[2]string{a.sku[i], a.warehouse[i]}]
	}
	// The compare-and-set never waits: the rows still at the versions read are locked
	// at once, in (sku, warehouse) order, or the attempt is lost (another checkout holds
	// one: NOWAIT; or changed one: fewer rows).
	var held []string
	if err := tx.NewRaw(`SELECT sku FROM inventory
		WHERE (sku, warehouse, version) IN (SELECT * FROM unnest(?::text[], ?::text[], ?::bigint[]))
		ORDER BY sku, warehouse FOR NO KEY UPDATE NOWAIT`, pgArray(a.sku), pgArray(a.warehouse), pgArray(versions)).Scan(ctx, &held); err != nil {
		if PgCode(err) == "55P03" {
			return errVersionMoved
		}
		return fmt.Errorf("compare and set: %w", err)
	}
	if len(held) != len(a.sku) {
		return errVersionMoved
	}
	if _, err := tx.ExecContext(ctx, `UPDATE inventory i SET reserved = i.reserved + v.q, version = i.version + 1, updated_at = ?
		FROM unnest(?::text[], ?::text[], ?::int[]) AS v(sku, wh, q) WHERE i.sku = v.sku AND i.warehouse = v.wh`,
		h.Now, pgArray(a.sku), pgArray(a.warehouse), pgArray(a.qty)); err != nil {
		return fmt.Errorf("reserve: %w", err)
	}
	return insertReservations(ctx, tx, h.OrderID, a, h.ExpiresAt, h.Now)
}
