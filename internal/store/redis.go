package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/uptrace/bun"
)

// RedisHolds is the hold store of the redis strategy (internal/redishold).
type RedisHolds interface {
	// Hold takes every line for orderID, all or none, kept ttl: short is -1 when held,
	// else the first short line's index with what it had left.
	Hold(ctx context.Context, orderID string, lines []checkout.Line, ttl time.Duration) (short, left int, err error)
	// Release gives orderID's hold back.
	Release(ctx context.Context, orderID string) error
	// Return puts units PostgreSQL released back on the counters.
	Return(ctx context.Context, items []checkout.OrderItem) error
	// Sync sets the counters to what PostgreSQL says is available.
	Sync(ctx context.Context, available map[string]int) error
}

// placeWithHold is the redis strategy: Redis admits (or refuses at once) the checkout,
// then PostgreSQL places it with row locks and its constraints, the last word. A hold
// whose order PostgreSQL did not place is given back. When Redis cannot answer the
// checkout goes on as the lock strategy (logged and counted by OnFallback).
func (s *Orders) placeWithHold(ctx context.Context, p checkout.PlaceOrder) (checkout.Order, bool, error) {
	if p.CartID != "" {
		return s.placeSingle(ctx, p, LockingReserver{})
	}
	short, left, err := s.redis.Hold(ctx, p.OrderID, p.Lines, p.ExpiresAt.Sub(p.Now))
	if err != nil {
		// A missing counter (Redis restarted, a new SKU): sync it from PostgreSQL, once.
		if serr := s.SyncStockCache(ctx, skusOf(p.Lines)); serr == nil {
			short, left, err = s.redis.Hold(ctx, p.OrderID, p.Lines, p.ExpiresAt.Sub(p.Now))
		}
	}
	if err != nil {
		if s.onRedisFallback != nil {
			s.onRedisFallback(err)
		}
		return s.placeSingle(ctx, p, LockingReserver{})
	}
	if short >= 0 {
		return checkout.Order{}, false, checkout.OutOfStockError([]string{"input", "items"}, short, p.Lines[short].SKU, left, p.Lines[short].Quantity)
	}
	o, replay, err := s.placeSingle(ctx, p, LockingReserver{})
	if err != nil || replay {
		if rerr := s.redis.Release(context.WithoutCancel(ctx), p.OrderID); rerr != nil && s.onRedisFallback != nil {
			s.onRedisFallback(rerr)
		}
	}
	return o, replay, err
}

// SyncStockCache sets the Redis counters of skus (all SKUs when nil) to PostgreSQL's
// available stock. The sweeper runs it, which also heals a Redis that lost its data.
func (s *Orders) SyncStockCache(ctx context.Context, skus []string) error {
	if s.redis == nil {
		return nil
	}
	var rows []struct {
		SKU   string `bun:"sku"`
		Avail int    `bun:"avail"`
	}
	q := s.db.NewRaw(`SELECT sku, sum(on_hand - reserved)::int AS avail FROM inventory GROUP BY sku`)
	if skus != nil {
		q = s.db.NewRaw(`SELECT sku, sum(on_hand - reserved)::int AS avail FROM inventory WHERE sku IN (?) GROUP BY sku`, bun.In(skus))
	}
	if err := q.Scan(ctx, &rows); err != nil {
		return mapErr(fmt.Errorf("stock for redis: %w", err))
	}
	avail := make(map[string]int, len(rows))
	for _, r := range rows {
		avail[r.SKU] = r.Avail
	}
	if skus != nil && len(avail) < len(skus) {
		return errors.New("unknown sku: nothing to sync")
	}
	return s.redis.Sync(ctx, avail)
}

// afterCommit runs what a committed change asks besides metrics: with the redis
// strategy, units PostgreSQL released go back on the counters.
func (s *Orders) afterCommit(o checkout.Order, eff checkout.Effects) {
	s.committed(o)
	if s.redis == nil || (eff.Stock != checkout.StockRelease && eff.Stock != checkout.StockRestock) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := s.redis.Return(ctx, o.Items); err != nil {
		slog.Warn("redis stock return failed; the sweeper's sync repairs it", "orderId", o.ID, "error", err)
	}
}
