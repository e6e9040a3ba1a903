package main

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/checkout-backend/checkout/internal/event"
	"github.com/checkout-backend/checkout/workers"
)

// pipelineProbe measures the asynchronous side of the workload's orders, read back from
// the timestamps the service stores, once every payment landed:
//   - it waits (at most -settle) until no order of the workload is PENDING_PAYMENT
//     without a payment outcome and the outbox is drained, or until that count stops
//     changing with the outbox drained (payments stuck in retries);
//   - outbox: events, publish lag (published_at - created_at), the relay's rate over
//     the window from the first to the last published_at and its peak in one second;
//   - end to end: order.placed's created_at to the payment consumer's inbox row
//     (processed_at);
//   - checkout to PAID: updated_at - created_at of the PAID orders.
//
// The service's clocks: outbox.created_at and orders.created_at are the checkout's
// start (the API's clock, taken before the transaction, so they include its lock
// waits); published_at is PostgreSQL's now() in the relay's transaction, i.e. when the
// relay claimed the batch (before publishing it); processed_at is now() in the
// payment worker's transaction that applies the outcome (after the charge).
type pipelineProbe struct{}

func (pipelineProbe) Name() string {
	return "outbox relay and payment saga (read back from the database)"
}

func (pipelineProbe) Before(context.Context, *runEnv) error { return nil }

// settleStall is how long the count of orders waiting for a payment may stay unchanged,
// with the outbox drained, before the wait gives up early.
const settleStall = 3 * time.Second

// settleResult is how the wait for the payments ended.
type settleResult struct {
	waited  time.Duration
	toCome  int // orders still PENDING_PAYMENT without a payment outcome
	backlog int // unpublished outbox rows
	stalled bool
	polls   int // queries the wait made (one transaction each)
}

// waitSettled polls until no order of the customers of prefix awaits a payment outcome
// and the outbox is drained (or that count stalls with the outbox drained, or limit
// passes).
func waitSettled(ctx context.Context, db *pgxpool.Pool, prefix string, limit time.Duration, stop <-chan struct{}) (settleResult, error) {
	start := time.Now()
	var res settleResult
	last, lastChange := -1, start
	for {
		err := db.QueryRow(ctx, `
			SELECT (SELECT count(*)::int FROM orders o
			        WHERE left(o.customer_id, length($1)) = $1 AND o.status = 'PENDING_PAYMENT'
			          AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.order_id = o.id AND p.status <> 'attempted')),
			       (SELECT count(*)::int FROM outbox WHERE published_at IS NULL)`, prefix).Scan(&res.toCome, &res.backlog)
		res.polls++
		if err != nil {
			return res, fmt.Errorf("wait for payments: %w", err)
		}
		now := time.Now()
		res.waited = now.Sub(start)
		if res.toCome == 0 && res.backlog == 0 {
			return res, nil
		}
		if res.toCome != last {
			last, lastChange = res.toCome, now
		} else if res.backlog == 0 && now.Sub(lastChange) >= settleStall {
			res.stalled = true
			return res, nil
		}
		if res.waited >= limit {
			return res, nil
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-stop:
			return res, nil
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// pipelineFigures is what the probe reads back.
type pipelineFigures struct {
	events      map[string]int // by type
	unpublished int
	publishLag  durStats
	firstPub    time.Time
	lastPub     time.Time
	published   int
	peakPerSec  int
	endToEnd    durStats
	placed      int // order.placed events
	toPaid      durStats
	statuses    map[string]int
}

// readPipeline reads the figures of the orders of the customers of prefix, in one
// snapshot.
func readPipeline(ctx context.Context, db *pgxpool.Pool, prefix string) (pipelineFigures, error) {
	f := pipelineFigures{events: map[string]int{}, statuses: map[string]int{}}
	// The workload's events: those of its orders.
	const ev = `(SELECT ob.* FROM outbox ob WHERE ob.aggregate_id IN
		(SELECT id::text FROM orders WHERE left(customer_id, length($1)) = $1))`
	err := pgx.BeginTxFunc(ctx, db, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT type, count(*)::int, count(*) FILTER (WHERE published_at IS NULL)::int
			FROM `+ev+` ev GROUP BY type`, prefix)
		if err != nil {
			return err
		}
		for rows.Next() {
			var typ string
			var n, unpub int
			if err := rows.Scan(&typ, &n, &unpub); err != nil {
				return err
			}
			f.events[typ] = n
			f.unpublished += unpub
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if f.publishLag, err = secondsStats(ctx, tx, `SELECT extract(epoch FROM published_at - created_at)
			FROM `+ev+` ev WHERE published_at IS NOT NULL`, prefix); err != nil {
			return err
		}
		var first, last *time.Time
		if err := tx.QueryRow(ctx, `SELECT min(published_at), max(published_at), count(published_at)::int,
				coalesce((SELECT max(n) FROM (SELECT count(*)::int AS n FROM `+ev+` ev2
				          WHERE published_at IS NOT NULL GROUP BY date_trunc('second', published_at)) s), 0)
			FROM `+ev+` ev`, prefix).Scan(&first, &last, &f.published, &f.peakPerSec); err != nil {
			return err
		}
		if first != nil {
			f.firstPub, f.lastPub = *first, *last
		}
		f.placed = f.events[event.OrderPlaced]
		if f.endToEnd, err = secondsStats(ctx, tx, `SELECT extract(epoch FROM i.processed_at - ev.created_at)
			FROM `+ev+` ev JOIN inbox i ON i.consumer = $2 AND i.event_id = ev.event_id::text
			WHERE ev.type = $3`, prefix, workers.PaymentConsumer, event.OrderPlaced); err != nil {
			return err
		}
		if f.toPaid, err = secondsStats(ctx, tx, `SELECT extract(epoch FROM updated_at - created_at)
			FROM orders WHERE left(customer_id, length($1)) = $1 AND status = 'PAID'`, prefix); err != nil {
			return err
		}
		f.statuses, err = countBy(ctx, tx, `SELECT status, count(*)::int FROM orders
			WHERE left(customer_id, length($1)) = $1 GROUP BY status`, prefix)
		return err
	})
	return f, err
}

// secondsStats runs query, whose one column is a duration in seconds, and summarises it
// with percentile_cont.
func secondsStats(ctx context.Context, tx pgx.Tx, query string, args ...any) (durStats, error) {
	var n int
	var p50, p99, mx float64
	err := tx.QueryRow(ctx, `SELECT count(*)::int,
			coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY s), 0)::float8,
			coalesce(percentile_cont(0.99) WITHIN GROUP (ORDER BY s), 0)::float8,
			coalesce(max(s), 0)::float8
		FROM (`+query+`) t(s)`, args...).Scan(&n, &p50, &p99, &mx)
	if err != nil {
		return durStats{}, err
	}
	sec := func(v float64) time.Duration { return time.Duration(v * float64(time.Second)) }
	return durStats{N: n, P50: sec(p50), P99: sec(p99), Max: sec(mx)}, nil
}

func (p pipelineProbe) After(ctx context.Context, env *runEnv, r *Report) error {
	var s settleResult
	if !r.Interrupted && env.opts.settle > 0 {
		var err error
		if s, err = waitSettled(ctx, env.db, env.customerPrefix, env.opts.settle, env.interrupted); err != nil {
			return err
		}
	}
	f, err := readPipeline(ctx, env.db, env.customerPrefix)
	if err != nil {
		return fmt.Errorf("outbox and payment figures: %w", err)
	}
	p.report(r, env.opts.settle, s, f)
	return nil
}

func (p pipelineProbe) report(r *Report, limit time.Duration, s settleResult, f pipelineFigures) {
	sec := Section{Title: p.Name()}
	switch {
	case r.Interrupted || limit == 0:
		sec.Add("payments landed", "not waited for (%d orders awaiting a payment outcome)", s.toCome)
	case s.toCome == 0 && s.backlog == 0 && s.waited < 100*time.Millisecond:
		sec.Add("payments landed", "all, and the outbox drained, by the end of the attack")
	case s.toCome == 0 && s.backlog == 0:
		sec.Add("payments landed", "all, and the outbox drained, %s after the attack", s.waited.Round(10*time.Millisecond))
	case s.toCome == 0:
		sec.Add("payments landed", "all, but %d outbox rows still unpublished %s after the attack", s.backlog, s.waited.Round(10*time.Millisecond))
	case s.stalled:
		sec.Add("payments landed", "NOT all: %d orders still PENDING_PAYMENT without an outcome; the count stopped changing with the outbox drained (gave up after %s)",
			s.toCome, s.waited.Round(10*time.Millisecond))
	default:
		sec.Add("payments landed", "NOT all: %d orders still PENDING_PAYMENT without an outcome after %s (outbox backlog %d)",
			s.toCome, s.waited.Round(10*time.Millisecond), s.backlog)
	}
	sec.Add("orders by status", "%s", countsText(f.statuses))
	total := 0
	for _, n := range f.events {
		total += n
	}
	sec.Add("outbox events", "%d (%s), %d unpublished", total, countsText(f.events), f.unpublished)
	sec.Add("publish lag", "%s  (published_at - created_at, %d events)", f.publishLag, f.publishLag.N)
	switch window := f.lastPub.Sub(f.firstPub); {
	case f.published == 0:
		sec.Add("relay rate", "n/a (nothing published)")
	case window <= 0:
		sec.Add("relay rate", "%d events in one batch", f.published)
	default:
		sec.Add("relay rate", "%.0f events/s over %s (first to last published_at), peak %d in one second",
			perSecond(uint64(f.published), window), window.Round(10*time.Millisecond), f.peakPerSec)
	}
	sec.Add("end-to-end lag", "%s  (order.placed created_at -> payment inbox processed_at, %d of %d events)",
		f.endToEnd, f.endToEnd.N, f.placed)
	sec.Add("checkout to PAID", "%s  (updated_at - created_at, %d PAID orders)", f.toPaid, f.toPaid.N)
	r.Sections = append(r.Sections, sec)
}
