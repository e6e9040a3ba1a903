package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/checkout-backend/checkout/internal/checkout"
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

// redisHold admits a checkout with a hold in Redis before the transaction (or refuses it
// at once), then holds its allocation with row locks (rowLock): PostgreSQL and its
// constraints have the last word, and a hold whose order PostgreSQL did not place is
// given back. When Redis cannot answer, the checkout goes on with the row lock alone
// (onFallback counts it). A cart's lines are read in the transaction, so a cart
// checkout is not admitted by Redis.
type redisHold struct {
	rowLock
	holds      RedisHolds
	sync       func(ctx context.Context, skus []string) error // counters from PostgreSQL
	onFallback func(error)
}

func (r redisHold) admit(ctx context.Context, p checkout.PlaceOrder) (func(bool), error) {
	if p.CartID != "" {
		return admitAll(ctx, p)
	}
	ttl := p.ExpiresAt.Sub(p.Now)
	short, left, err := r.holds.Hold(ctx, p.OrderID, p.Lines, ttl)
	if err != nil {
		// A missing counter (Redis restarted, a new SKU): sync it from PostgreSQL, once.
		skus := make([]string, len(p.Lines))
		for i, l := range p.Lines {
			skus[i] = l.SKU
		}
		if serr := r.sync(ctx, skus); serr == nil {
			short, left, err = r.holds.Hold(ctx, p.OrderID, p.Lines, ttl)
		}
	}
	if err != nil {
		r.fallback(err)
		return admitAll(ctx, p)
	}
	if short >= 0 {
		l := p.Lines[short]
		return nil, checkout.OutOfStockError([]string{"input", "items"}, short, l.SKU, left, l.Quantity)
	}
	return func(placed bool) {
		if placed {
			return
		}
		if err := r.holds.Release(context.WithoutCancel(ctx), p.OrderID); err != nil {
			r.fallback(err)
		}
	}, nil
}

func (r redisHold) fallback(err error) {
	if r.onFallback != nil {
		r.onFallback(err)
	}
}

// SyncStockCache sets the Redis counters of skus (all SKUs when nil) to PostgreSQL's
// available stock. The sweeper runs it, which also heals a Redis that lost its data.
func (s *Orders) SyncStockCache(ctx context.Context, skus []string) error {
	if s.redis == nil {
		return nil
	}
	avail, err := Available(ctx, s.db, skus)
	if err != nil {
		return fmt.Errorf("stock for redis: %w", err)
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
