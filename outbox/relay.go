package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/uptrace/bun"

	"github.com/checkout-backend/checkout/internal/event"
)

// RelayOptions tune a relay.
type RelayOptions struct {
	Batch int           // rows claimed at once (OUTBOX_BATCH); required
	Poll  time.Duration // fallback polling interval when no NOTIFY arrives (OUTBOX_POLL_INTERVAL); required
	// Linger is how long a wake-up waits before the claim (OUTBOX_LINGER), so events
	// committed meanwhile share its publish and confirm. Only a relay that found company
	// waits: after a batch of one event (events arrive slower than it publishes) the next
	// wake-up claims at once, so a quiet shop's orders are not held back. A full batch
	// never waits: the next is claimed at once.
	Linger time.Duration
	// PublishTimeout bounds one batch's publish and confirms (default 10s); past it the
	// batch is released for another attempt.
	PublishTimeout time.Duration
	// Lease is how long a claim keeps other relays off its rows (default 3x
	// PublishTimeout): a relay that dies mid-batch delays those rows by at most this.
	Lease  time.Duration
	Logger *slog.Logger
	// AfterConfirm runs after the broker confirmed a batch and before the rows are
	// marked; an error aborts the batch as a crash would (tests).
	AfterConfirm func() error
	// Observe, when set, is told each published batch (metrics).
	Observe func(n int, confirmLatency time.Duration, lags []time.Duration)
	// Notifier, when set, wakes this relay at once when this process commits events.
	Notifier *Notifier
	// Listen is the pool the relay holds its LISTEN connection on: a session of its own,
	// so not a transaction pooler's (a LISTEN there lands on a server connection that
	// goes back to the pool). Nil: the relay's own database. NoListen: none at all; the
	// relay is then woken by its Notifier and otherwise polls every Poll.
	Listen   *bun.DB
	NoListen bool
}

// Relay publishes the outbox through a Publisher. Several relays may run at once; see
// Claim for how they share the rows and keep each order's events in order.
type Relay struct {
	db  *bun.DB
	pub Publisher
	now func() time.Time
	opt RelayOptions
}

// NewRelay returns a relay over db publishing with pub; now is its clock (claims,
// leases, published_at), refused when nil like the other dependencies.
func NewRelay(db *bun.DB, pub Publisher, now func() time.Time, opt RelayOptions) (*Relay, error) {
	if db == nil || pub == nil || now == nil {
		return nil, errors.New("outbox: nil database, publisher or clock")
	}
	if opt.Batch <= 0 || opt.Poll <= 0 {
		// Batch and Poll are configuration (OUTBOX_BATCH, OUTBOX_POLL_INTERVAL): the
		// caller says, so their defaults are written once, in config.
		return nil, fmt.Errorf("outbox: relay batch %d and poll %s must be positive", opt.Batch, opt.Poll)
	}
	if opt.PublishTimeout <= 0 {
		opt.PublishTimeout = 10 * time.Second
	}
	if opt.Lease <= 0 {
		opt.Lease = 3 * opt.PublishTimeout
	}
	if opt.Lease <= opt.PublishTimeout {
		return nil, fmt.Errorf("outbox: lease %s must be longer than the publish timeout %s", opt.Lease, opt.PublishTimeout)
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.Listen == nil {
		opt.Listen = db
	}
	return &Relay{db: db, pub: pub, now: now, opt: opt}, nil
}

// Run relays until ctx ends. It wakes when this process's Notifier says events were
// committed, on NOTIFY "outbox.<schema>" (another process's Notifier), and polls as a
// fallback; after a failure it waits with exponential backoff and jitter.
func (r *Relay) Run(ctx context.Context) error {
	wake := make(chan struct{}, 1)
	if r.opt.Notifier != nil {
		r.opt.Notifier.subscribe(wake)
	}
	if !r.opt.NoListen {
		go r.listen(ctx, wake)
	}
	poll := time.NewTicker(r.opt.Poll)
	defer poll.Stop()
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval, bo.MaxInterval = 100*time.Millisecond, 5*time.Second
	for {
		n, err := r.RelayOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			wait := bo.NextBackOff()
			r.opt.Logger.Warn("outbox relay: publish failed; retrying", "error", err, "retryIn", wait.String())
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
			continue
		}
		bo.Reset()
		if n == r.opt.Batch {
			continue // more is waiting
		}
		linger := r.opt.Linger > 0 && n > 1 // events came faster than one a batch
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
			if linger {
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(r.opt.Linger):
				}
			}
		case <-poll.C:
		}
	}
}

// RelayOnce claims one batch, publishes it with a deadline and marks it published; it
// returns how many rows it published. A failed publish releases the rows with the
// error recorded (outbox.last_error).
func (r *Relay) RelayOnce(ctx context.Context) (int, error) {
	token := uuid.NewString()
	rows, err := Claim(ctx, r.db, token, r.now(), r.opt.Lease, r.opt.Batch)
	if err != nil || len(rows) == 0 {
		return 0, err
	}
	envs := make([]event.Envelope, len(rows))
	ids := make([]int64, len(rows))
	for i, row := range rows {
		envs[i], ids[i] = row.Envelope(), row.ID
	}
	// The marks below must land even when ctx ends meanwhile (shutdown): a confirmed
	// batch left unmarked is published again.
	bg := context.WithoutCancel(ctx)
	start := r.now()
	pctx, cancel := context.WithTimeout(ctx, r.opt.PublishTimeout)
	err = r.pub.Publish(pctx, envs)
	cancel()
	if err == nil && r.opt.AfterConfirm != nil {
		err = r.opt.AfterConfirm()
	}
	if err != nil {
		mctx, cancel := context.WithTimeout(bg, 5*time.Second)
		defer cancel()
		if rerr := Release(mctx, r.db, ids, token, err.Error()); rerr != nil {
			r.opt.Logger.Warn("outbox: release after a failed publish failed; the lease expires instead", "error", rerr)
		}
		return 0, fmt.Errorf("publish %d events: %w", len(rows), err)
	}
	confirmed := r.now()
	mctx, cancel := context.WithTimeout(bg, 10*time.Second)
	defer cancel()
	if err := MarkPublished(mctx, r.db, ids, confirmed); err != nil {
		return 0, err
	}
	if r.opt.Observe != nil {
		lags := make([]time.Duration, len(rows))
		for i, row := range rows {
			lags[i] = confirmed.Sub(row.CreatedAt)
		}
		r.opt.Observe(len(rows), confirmed.Sub(start), lags)
	}
	return len(rows), nil
}

// listen holds one connection of the Listen pool on LISTEN "outbox.<schema>" (the schema
// its connection uses) and signals wake on each NOTIFY.
func (r *Relay) listen(ctx context.Context, wake chan<- struct{}) {
	for ctx.Err() == nil {
		err := func() error {
			conn, err := r.opt.Listen.Conn(ctx)
			if err != nil {
				return err
			}
			defer conn.Close()
			return conn.Raw(func(dc any) error {
				pc := dc.(*stdlib.Conn).Conn()
				var schema string
				if err := pc.QueryRow(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
					return err
				}
				if _, err := pc.Exec(ctx, "LISTEN "+pgx.Identifier{Channel(schema)}.Sanitize()); err != nil {
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

// Channel is the NOTIFY channel of the outbox table in schema (migrations/0005).
func Channel(schema string) string { return "outbox." + schema }
