package outbox

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/stdlib"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/uptrace/bun"

	"github.com/checkout-backend/checkout/internal/broker"
)

// Publisher sends messages and returns once the broker confirmed them all.
type Publisher interface {
	Publish(ctx context.Context, msgs []amqp.Publishing) error
}

// RelayOptions tune a relay.
type RelayOptions struct {
	Batch     int           // rows claimed per transaction (default 100)
	Poll      time.Duration // fallback polling interval when no NOTIFY arrives (default 1s)
	Retention time.Duration // published rows older than this are pruned (default 72h)
	Logger    *slog.Logger
	// AfterConfirm runs after the broker confirmed a batch and before the rows are
	// marked; an error aborts the batch as a crash would (tests).
	AfterConfirm func() error
	// Observe, when set, is told each published batch (metrics).
	Observe func(n int, confirmLatency time.Duration, lags []time.Duration)
}

// Relay publishes the outbox to RabbitMQ. Several relays may run at once: each claims
// rows with FOR UPDATE SKIP LOCKED, and a row is only claimable when no earlier row of
// the same aggregate is still unpublished, so one order's events reach the broker in
// the order they were written whichever relay takes them.
type Relay struct {
	db  *bun.DB
	pub Publisher
	opt RelayOptions
}

// NewRelay returns a relay over db publishing with pub.
func NewRelay(db *bun.DB, pub Publisher, opt RelayOptions) *Relay {
	if opt.Batch == 0 {
		opt.Batch = 100
	}
	if opt.Poll == 0 {
		opt.Poll = time.Second
	}
	if opt.Retention == 0 {
		opt.Retention = 72 * time.Hour
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	return &Relay{db: db, pub: pub, opt: opt}
}

// Run relays until ctx ends. It wakes on NOTIFY outbox and polls as a fallback.
func (r *Relay) Run(ctx context.Context) error {
	wake := make(chan struct{}, 1)
	go r.listen(ctx, wake)
	poll := time.NewTicker(r.opt.Poll)
	defer poll.Stop()
	prune := time.NewTicker(min(r.opt.Retention/10, time.Hour))
	defer prune.Stop()
	failures := 0
	for {
		n, err := r.RelayOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			failures++
			wait := min(time.Duration(1<<min(failures, 6))*100*time.Millisecond, 5*time.Second)
			r.opt.Logger.Warn("outbox relay: publish failed; retrying", "error", err, "retryIn", wait.String())
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
			continue
		}
		failures = 0
		if n == r.opt.Batch {
			continue // more is waiting
		}
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
		case <-poll.C:
		case <-prune.C:
			if n, err := r.Prune(ctx); err != nil {
				r.opt.Logger.Warn("outbox prune failed", "error", err)
			} else if n > 0 {
				r.opt.Logger.Info("outbox pruned", "rows", n)
			}
		}
	}
}

// RelayOnce claims one batch, publishes it with confirms and marks it published.
func (r *Relay) RelayOnce(ctx context.Context) (int, error) {
	var n int
	err := r.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		var rows []Row
		if err := tx.NewRaw(`SELECT id, event_id, type, aggregate_id, payload, headers, created_at
			FROM outbox o
			WHERE published_at IS NULL
			  AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.aggregate_id = o.aggregate_id
			                  AND p.published_at IS NULL AND p.id < o.id)
			ORDER BY id LIMIT ? FOR UPDATE SKIP LOCKED`, r.opt.Batch).Scan(ctx, &rows); err != nil {
			return fmt.Errorf("claim: %w", err)
		}
		if len(rows) == 0 {
			return nil
		}
		msgs := make([]amqp.Publishing, len(rows))
		ids := make([]int64, len(rows))
		for i, row := range rows {
			env := row.Envelope()
			body, err := json.Marshal(env)
			if err != nil {
				return err
			}
			msgs[i] = broker.Message(env, body)
			ids[i] = row.ID
		}
		start := time.Now()
		if err := r.pub.Publish(ctx, msgs); err != nil {
			return err
		}
		confirmed := time.Now()
		if r.opt.AfterConfirm != nil {
			if err := r.opt.AfterConfirm(); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, "UPDATE outbox SET published_at = now(), attempts = attempts + 1 WHERE id IN (?)", bun.In(ids)); err != nil {
			return fmt.Errorf("mark published: %w", err)
		}
		if r.opt.Observe != nil {
			lags := make([]time.Duration, len(rows))
			for i, row := range rows {
				lags[i] = confirmed.Sub(row.CreatedAt)
			}
			defer r.opt.Observe(len(rows), confirmed.Sub(start), lags)
		}
		n = len(rows)
		return nil
	})
	return n, err
}

// Prune deletes published rows older than the retention period, in bounded batches.
func (r *Relay) Prune(ctx context.Context) (int64, error) {
	var total int64
	for {
		res, err := r.db.ExecContext(ctx, `DELETE FROM outbox WHERE id IN (SELECT id FROM outbox
			WHERE published_at IS NOT NULL AND published_at < now() - ?::interval LIMIT 5000)`,
			fmt.Sprintf("%d milliseconds", r.opt.Retention.Milliseconds()))
		if err != nil {
			return total, err
		}
		n, _ := res.RowsAffected()
		total += n
		if n < 5000 {
			return total, nil
		}
	}
}

// listen holds one connection on LISTEN outbox and signals wake on each NOTIFY.
func (r *Relay) listen(ctx context.Context, wake chan<- struct{}) {
	for ctx.Err() == nil {
		err := func() error {
			conn, err := r.db.Conn(ctx)
			if err != nil {
				return err
			}
			defer conn.Close()
			return conn.Raw(func(dc any) error {
				pc := dc.(*stdlib.Conn).Conn()
				if _, err := pc.Exec(ctx, "LISTEN outbox"); err != nil {
					return err
				}
				for {
					if _, err := pc.WaitForNotification(ctx); err != nil {
						return err
					}
					select {
					case wake <- struct{}{}:
					default:
					}
				}
			})
		}()
		if ctx.Err() != nil {
			return
		}
		r.opt.Logger.Warn("outbox listener lost; polling until it is back", "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
}

// Backlog returns the number of unpublished rows and the age of the oldest.
func Backlog(ctx context.Context, db bun.IDB) (int, time.Duration, error) {
	var res struct {
		N      int        `bun:"n"`
		Oldest *time.Time `bun:"oldest"`
	}
	if err := db.NewRaw("SELECT count(*) AS n, min(created_at) AS oldest FROM outbox WHERE published_at IS NULL").Scan(ctx, &res); err != nil {
		return 0, 0, err
	}
	if res.Oldest == nil {
		return res.N, 0, nil
	}
	return res.N, time.Since(*res.Oldest), nil
}
