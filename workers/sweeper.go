package workers

import (
	"context"
	"log/slog"
	"time"

	"github.com/checkout-backend/checkout/internal/checkout"
)

// Maintainer keeps the tables in shape (store.Maintenance): it folds pending sales into
// inventory and deletes what is kept only for a while.
type Maintainer interface {
	FoldSales(ctx context.Context) (int64, error)
	PruneKeys(ctx context.Context, retention time.Duration) (int64, error)
	PruneOutbox(ctx context.Context, retention time.Duration) (int64, error)
	VacuumQueues(ctx context.Context) ([]string, error)
}

// SweeperOptions configure a sweeper.
type SweeperOptions struct {
	Interval time.Duration // how often expired orders are looked for (default 5s)
	// KeyRetention is how long idempotency keys and inbox rows are kept (0: for ever);
	// OutboxRetention how long published outbox rows are (0: for ever).
	KeyRetention    time.Duration
	OutboxRetention time.Duration
	Logger          *slog.Logger
	// OnFailure, when set, is told each order the sweeper could not expire (metrics).
	OnFailure func(orderID string, err error)
	// StockSync, when set, runs every sweep (the redis strategy's counters rebuilt from
	// PostgreSQL).
	StockSync func(ctx context.Context) error
}

// Sweeper expires unpaid orders whose reservation ran out: their stock goes back on
// sale and the order moves to EXPIRED with its event. Several sweepers may run: each
// order changes under its row lock, and the expiry is checked again there. Every sweep
// it also folds pending sales into inventory; once an hour it prunes old idempotency
// keys, inbox rows and published outbox rows.
type Sweeper struct {
	orders checkout.OrderStore
	pruner Maintainer
	now    func() time.Time
	opt    SweeperOptions
}

// NewSweeper returns a sweeper over orders; pruner may be nil (no folding or pruning).
// now is its clock (what has expired, when to prune); a nil clock panics (a programming
// error).
func NewSweeper(orders checkout.OrderStore, pruner Maintainer, now func() time.Time, opt SweeperOptions) *Sweeper {
	mustClock("NewSweeper", now)
	if opt.Interval <= 0 {
		opt.Interval = 5 * time.Second
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	return &Sweeper{orders: orders, pruner: pruner, now: now, opt: opt}
}

// Run sweeps until ctx ends, and prunes once an hour.
func (s *Sweeper) Run(ctx context.Context) error {
	t := time.NewTicker(s.opt.Interval)
	defer t.Stop()
	var lastPrune time.Time
	for {
		if _, err := s.SweepOnce(ctx); err != nil && ctx.Err() == nil {
			s.opt.Logger.Warn("expiry sweep failed", "error", err)
		}
		if s.pruner != nil {
			if _, err := s.pruner.FoldSales(ctx); err != nil && ctx.Err() == nil {
				s.opt.Logger.Warn("folding sales into inventory failed", "error", err)
			}
			if t, err := s.pruner.VacuumQueues(ctx); err != nil && ctx.Err() == nil {
				s.opt.Logger.Warn("vacuum of the queue tables failed", "error", err)
			} else if len(t) > 0 {
				s.opt.Logger.Debug("queue tables vacuumed (the server's autovacuum is off)", "tables", t)
			}
		}
		if s.opt.StockSync != nil {
			if err := s.opt.StockSync(ctx); err != nil && ctx.Err() == nil {
				s.opt.Logger.Warn("stock counter sync failed", "error", err)
			}
		}
		if now := s.now(); s.pruner != nil && now.Sub(lastPrune) > time.Hour {
			lastPrune = now
			s.prune(ctx)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (s *Sweeper) prune(ctx context.Context) {
	if s.opt.KeyRetention > 0 {
		if n, err := s.pruner.PruneKeys(ctx, s.opt.KeyRetention); err != nil && ctx.Err() == nil {
			s.opt.Logger.Warn("prune of idempotency keys and inbox failed", "error", err)
		} else if n > 0 {
			s.opt.Logger.Info("pruned idempotency keys and inbox rows", "rows", n)
		}
	}
	if s.opt.OutboxRetention > 0 {
		if n, err := s.pruner.PruneOutbox(ctx, s.opt.OutboxRetention); err != nil && ctx.Err() == nil {
			s.opt.Logger.Warn("outbox prune failed", "error", err)
		} else if n > 0 {
			s.opt.Logger.Info("outbox pruned", "rows", n)
		}
	}
}

// sweepBatch is how many expired orders one query lists.
const sweepBatch = 100

// SweepOnce expires every order past its reservation and returns how many it expired.
// An order it cannot move is logged, counted (OnFailure) and skipped: the rest are
// still expired. The error is the listing's, or the last order's when none could move.
func (s *Sweeper) SweepOnce(ctx context.Context) (int, error) {
	total := 0
	skip := map[string]bool{}
	for {
		ids, err := s.orders.ExpiredOrders(ctx, s.now(), sweepBatch+len(skip))
		if err != nil {
			return total, err
		}
		fresh := 0
		var lastErr error
		for _, id := range ids {
			if skip[id] {
				continue
			}
			fresh++
			o, err := s.orders.Transition(ctx, id, func(o *checkout.Order) (checkout.Change, error) {
				if o.Status != checkout.StatusPendingPayment || o.ReservationExpiresAt == nil || !s.now().After(*o.ReservationExpiresAt) {
					return checkout.Change{}, nil
				}
				return checkout.Change{To: checkout.StatusExpired}, nil
			})
			if err != nil {
				if ctx.Err() != nil {
					return total, ctx.Err()
				}
				skip[id], lastErr = true, err
				s.opt.Logger.Error("could not expire order; going on with the others", "orderId", id, "error", err)
				if s.opt.OnFailure != nil {
					s.opt.OnFailure(id, err)
				}
				continue
			}
			if o.Status == checkout.StatusExpired {
				total++
			} else {
				skip[id] = true // moved meanwhile (paid, cancelled): not listed again
			}
		}
		if fresh == 0 || len(ids) < sweepBatch+len(skip) {
			if total == 0 && lastErr != nil {
				return total, lastErr
			}
			return total, nil
		}
	}
}
