package main

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// rawResult is the single-row ceiling at one concurrency: the pessimistic reservation
// transaction straight through pgx, nothing else.
type rawResult struct {
	inFlight int
	txPerSec float64
	p50, p99 time.Duration
}

// rawSchema holds the ceiling's own tables, in the bench database.
const rawSchema = "raw_ceiling"

// measureRawCeiling runs, for d at each concurrency, the 7-round-trip transaction the
// issue names on one hot row of its own tables: BEGIN; lock the row (FOR UPDATE);
// update reserved; insert the order, its reservation and an outbox row; COMMIT. It is
// the most one locked SQL transaction per order can carry on this machine.
func measureRawCeiling(ctx context.Context, dsn string, levels []int, d time.Duration) ([]rawResult, error) {
	setup, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer setup.Close(context.Background())
	for _, q := range []string{
		"DROP SCHEMA IF EXISTS " + rawSchema + " CASCADE",
		"CREATE SCHEMA " + rawSchema,
		"CREATE TABLE " + rawSchema + ".inventory (sku text PRIMARY KEY, on_hand int NOT NULL, reserved int NOT NULL DEFAULT 0, CHECK (reserved <= on_hand))",
		"CREATE TABLE " + rawSchema + ".orders (id uuid PRIMARY KEY, customer_id text NOT NULL, total_cents bigint NOT NULL, created_at timestamptz NOT NULL DEFAULT now())",
		"CREATE TABLE " + rawSchema + ".reservations (order_id uuid NOT NULL REFERENCES " + rawSchema + ".orders, sku text NOT NULL, quantity int NOT NULL, PRIMARY KEY (order_id, sku))",
		"CREATE TABLE " + rawSchema + ".outbox (id bigserial PRIMARY KEY, event_id uuid NOT NULL, aggregate_id text NOT NULL, payload jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now())",
		"INSERT INTO " + rawSchema + ".inventory VALUES ('HOT', 2000000000, 0)",
	} {
		if _, err := setup.Exec(ctx, q); err != nil {
			return nil, fmt.Errorf("raw ceiling setup: %w", err)
		}
	}
	defer setup.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+rawSchema+" CASCADE")

	var out []rawResult
	for _, n := range levels {
		r, err := rawRun(ctx, dsn, n, d)
		if err != nil {
			return out, err
		}
		out = append(out, r)
	}
	return out, nil
}

func rawRun(ctx context.Context, dsn string, n int, d time.Duration) (rawResult, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return rawResult{}, err
	}
	cfg.MaxConns = int32(min(n, 64)) // PostgreSQL's own connection limit is about 100
	cfg.MinConns = cfg.MaxConns
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return rawResult{}, err
	}
	defer pool.Close()
	var done atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	stop := time.Now().Add(d)
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for w := 0; w < n; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for time.Now().Before(stop) && ctx.Err() == nil {
				t0 := time.Now()
				if err := rawTx(ctx, pool, w); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				mine = append(mine, time.Since(t0))
				done.Add(1)
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	start := time.Now()
	wg.Wait()
	elapsed := time.Since(start)
	if err, _ := firstErr.Load().(error); err != nil {
		return rawResult{}, fmt.Errorf("raw ceiling at %d in flight: %w", n, err)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	q := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(int(p*float64(len(lat))), len(lat)-1)]
	}
	return rawResult{inFlight: n, txPerSec: float64(done.Load()) / elapsed.Seconds(), p50: q(0.5), p99: q(0.99)}, nil
}

func rawTx(ctx context.Context, pool *pgxpool.Pool, worker int) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var onHand, reserved int
		if err := tx.QueryRow(ctx, "SELECT on_hand, reserved FROM "+rawSchema+".inventory WHERE sku = 'HOT' FOR UPDATE").Scan(&onHand, &reserved); err != nil {
			return err
		}
		if onHand-reserved < 1 {
			return fmt.Errorf("raw ceiling: sold out")
		}
		if _, err := tx.Exec(ctx, "UPDATE "+rawSchema+".inventory SET reserved = reserved + 1 WHERE sku = 'HOT'"); err != nil {
			return err
		}
		id := uuid.New()
		if _, err := tx.Exec(ctx, "INSERT INTO "+rawSchema+".orders (id, customer_id, total_cents) VALUES ($1, $2, 15000)", id, fmt.Sprint("c", worker)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "INSERT INTO "+rawSchema+".reservations VALUES ($1, 'HOT', 1)", id); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "INSERT INTO "+rawSchema+".outbox (event_id, aggregate_id, payload) VALUES ($1, $2, '{}')", uuid.New(), id.String())
		return err
	})
}
