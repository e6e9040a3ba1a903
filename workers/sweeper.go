package workers

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/uptrace/bun"

	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/store"
)

// Sweeper expires unpaid orders whose reservation ran out: their stock goes back on
// sale and the order moves to EXPIRED with its event. Several sweepers may run: each
// order changes under its row lock, and the expiry is checked again there.
type Sweeper struct {
	db       *bun.DB
	orders   *store.Orders
	interval time.Duration
	logger   *slog.Logger
	now      func() time.Time
	// Retention is how long idempotency keys and consumers' inbox rows are kept (at least
	// 24 hours, as the contract promises for keys); 0 keeps them for ever.
	Retention time.Duration
}

// NewSweeper returns a sweeper checking every interval.
func NewSweeper(db *bun.DB, orders *store.Orders, interval time.Duration, logger *slog.Logger, now func() time.Time) *Sweeper {
	if interval <= 0 {
		interval = 5 * time.Second
	}
	if logger == nil {
		logger = slog.Default()
	}
	if now == nil {
		now = time.Now
	}
	return &Sweeper{db: db, orders: orders, interval: interval, logger: logger, now: now}
}

// Run sweeps until ctx ends.
func (s *Sweeper) Run(ctx context.Context) error {
	t := time.NewTicker(s.interval)
	defer t.Stop()
	lastPrune := time.Time{}
	for {
		if _, err := s.SweepOnce(ctx); err != nil && ctx.Err() == nil {
			s.logger.Warn("expiry sweep failed", "error", err)
		}
		if s.Retention > 0 && time.Since(lastPrune) > time.Hour {
			lastPrune = time.Now()
			if n, err := s.Prune(ctx); err != nil && ctx.Err() == nil {
				s.logger.Warn("prune failed", "error", err)
			} else if n > 0 {
				s.logger.Info("pruned idempotency keys and inbox rows", "rows", n)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// SweepOnce expires every order past its reservation; it returns how many.
func (s *Sweeper) SweepOnce(ctx context.Context) (int, error) {
	total := 0
	for {
		var ids []string
		if err := s.db.NewRaw(`SELECT id FROM orders WHERE status = 'PENDING_PAYMENT' AND reservation_expires_at < ?
			ORDER BY reservation_expires_at LIMIT 100`, s.now()).Scan(ctx, &ids); err != nil {
			return total, err
		}
		for _, id := range ids {
			o, err := s.orders.Transition(ctx, id, func(o *checkout.Order) (checkout.Change, error) {
				if o.Status != checkout.StatusPendingPayment || o.ReservationExpiresAt == nil || !s.now().After(*o.ReservationExpiresAt) {
					return checkout.Change{}, nil
				}
				return checkout.Change{To: checkout.StatusExpired}, nil
			})
			if err != nil {
				return total, err
			}
			if o.Status == checkout.StatusExpired {
				total++
			}
		}
		if len(ids) < 100 {
			return total, nil
		}
	}
}

// Prune deletes idempotency keys and inbox rows older than Retention, in bounded
// batches; it returns how many rows went.
func (s *Sweeper) Prune(ctx context.Context) (int64, error) {
	if s.Retention < 24*time.Hour {
		return 0, fmt.Errorf("retention %s is under the 24 hours keys must be kept", s.Retention)
	}
	cutoff := s.now().Add(-s.Retention)
	var total int64
	for _, q := range []string{
		"DELETE FROM idempotency_keys WHERE ctid IN (SELECT ctid FROM idempotency_keys WHERE created_at < ? LIMIT 5000)",
		"DELETE FROM inbox WHERE ctid IN (SELECT ctid FROM inbox WHERE processed_at < ? LIMIT 5000)",
	} {
		for {
			res, err := s.db.ExecContext(ctx, q, cutoff)
			if err != nil {
				return total, err
			}
			n, _ := res.RowsAffected()
			total += n
			if n < 5000 {
				break
			}
		}
	}
	return total, nil
}
