// Package outbox is the transactional outbox: Insert writes an event in the caller's
// transaction, so it commits or rolls back with the change it announces; Claim, Publish
// through a Publisher, then MarkPublished move it to the broker. Relay runs that loop.
// The outbox knows envelopes and one small Publisher interface; only the broker adapter
// knows AMQP.
//
// The clock is a dependency: NewRelay and Scheduler take it as their now argument,
// never default it and refuse a nil one; the one-statement functions (Claim,
// MarkPublished, Backlog, ScheduleRetry) take the time itself.
package outbox

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"

	"github.com/checkout-backend/checkout/internal/event"
	"github.com/checkout-backend/checkout/internal/pgprep"
	clog "github.com/checkout-backend/checkout/internal/platform/log"
)

// Publisher sends events to the broker, in order, and returns once the broker confirmed
// every one of them (or an error: then none may be assumed published).
type Publisher interface {
	Publish(ctx context.Context, events []event.Envelope) error
}

// Row is an outbox row.
type Row struct {
	bun.BaseModel `bun:"table:outbox"`

	ID          int64             `bun:"id,pk,autoincrement"`
	EventID     string            `bun:"event_id,type:uuid"`
	Type        string            `bun:"type"`
	AggregateID string            `bun:"aggregate_id"`
	Payload     json.RawMessage   `bun:"payload,type:jsonb"`
	Headers     map[string]string `bun:"headers,type:jsonb"`
	CreatedAt   time.Time         `bun:"created_at"`
	Destination *string           `bun:"destination"`
}

// Envelope turns the row back into the event it holds.
func (r Row) Envelope() event.Envelope {
	env := event.Envelope{ID: r.EventID, Type: r.Type, AggregateID: r.AggregateID,
		OccurredAt: r.CreatedAt, Payload: r.Payload, Headers: r.Headers}
	if r.Destination != nil {
		env.Destination = *r.Destination
	}
	if id := r.Headers[RetryOfHeader]; id != "" {
		env.ID = id
	}
	return env
}

// RetryOfHeader holds, in a retry's row, the id of the event it retries (the row has an
// id of its own: event ids are unique in the outbox).
const RetryOfHeader = "x-retry-of"

// ScheduleRetry writes, on db (no transaction needed: it stands alone), a retry of env
// for one consumer, due at due: the relay publishes it then, straight to that
// consumer's queue, with the attempt number in its headers. Its row has an aggregate of
// its own, so a waiting retry never holds back the later events of its order.
func ScheduleRetry(ctx context.Context, db bun.IDB, consumer string, env event.Envelope, attempt int, due time.Time) error {
	headers := make(map[string]string, len(env.Headers)+1)
	for k, v := range env.Headers {
		headers[k] = v
	}
	headers[event.AttemptHeader] = strconv.Itoa(attempt)
	headers[RetryOfHeader] = env.ID
	hb, err := json.Marshal(headers)
	if err != nil {
		return err
	}
	// A retry keeps the event's id (consumers deduplicate by it); the row's unique
	// event_id is the event's id for this consumer and attempt.
	if _, err := db.ExecContext(ctx, `INSERT INTO outbox (event_id, type, aggregate_id, payload, headers, created_at, available_at, destination)
		VALUES (gen_random_uuid(), ?, ?, ?::jsonb, ?::jsonb, ?, ?, ?)`,
		env.Type, "retry:"+consumer+":"+env.ID, string(env.Payload), string(hb), env.OccurredAt, due, consumer); err != nil {
		return fmt.Errorf("schedule retry of %s for %s: %w", env.ID, consumer, err)
	}
	return nil
}

// injectTrace stamps ctx's trace context on headers through the process's OpenTelemetry
// propagator, which telemetry.Setup installs (none installed: it writes nothing).
func injectTrace(ctx context.Context, headers map[string]string) {
	otel.GetTextMapPropagator().Inject(ctx, propagation.MapCarrier(headers))
}

// CorrelationHeader carries the correlation id of the request that made an event.
const CorrelationHeader = "x-correlation-id"

// Insert writes env in the caller's transaction (db is that bun.Tx), so the event
// commits or rolls back with the change it announces. Once it committed, the caller
// wakes the relays (Notifier.Notify).
func Insert(ctx context.Context, db bun.IDB, env event.Envelope) error {
	return InsertMany(ctx, db, []event.Envelope{env})
}

// InsertMany writes envs in the caller's transaction in one statement (one NOTIFY).
func InsertMany(ctx context.Context, db bun.IDB, envs []event.Envelope) error {
	if len(envs) == 0 {
		return nil
	}
	args, err := InsertArgs(ctx, envs)
	if err != nil {
		return err
	}
	if _, err := db.ExecContext(ctx, InsertSQL.For(db), args...); err != nil {
		return fmt.Errorf("outbox insert %d events (%s...): %w", len(envs), envs[0].Type, err)
	}
	return nil
}

// ContextHeaders are the headers an event written on behalf of ctx carries: the trace
// context (through the process's propagator) and the correlation id. A caller whose events
// are written later, in a transaction of many callers (group commit), puts them in its
// envelope's Headers while it still holds its own context.
func ContextHeaders(ctx context.Context) map[string]string {
	h := map[string]string{}
	injectTrace(ctx, h)
	if cid := clog.CorrelationID(ctx); cid != "" {
		h[CorrelationHeader] = cid
	}
	return h
}

// InsertSQL writes events: a prepared statement (pgprep) whose arguments InsertArgs
// makes.
var InsertSQL = pgprep.New("outbox_insert", `INSERT INTO outbox (event_id, type, aggregate_id, payload, headers, created_at)
		SELECT * FROM unnest(?::uuid[], ?::text[], ?::text[], ?::jsonb[], ?::jsonb[], ?::timestamptz[])`)

// InsertStatement is the statement InsertMany runs (bun placeholders and their
// arguments), for a caller that sends it with other statements in one round trip and
// adds to its text (else it sends InsertSQL with InsertArgs).
func InsertStatement(ctx context.Context, envs []event.Envelope) (string, []any, error) {
	args, err := InsertArgs(ctx, envs)
	return InsertSQL.Text(), args, err
}

// InsertArgs are the arguments of InsertSQL for envs.
func InsertArgs(ctx context.Context, envs []event.Envelope) ([]any, error) {
	n := len(envs)
	id, typ, agg, payload, headers := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	at := make([]time.Time, n)
	cid := clog.CorrelationID(ctx)
	for i, env := range envs {
		h := make(map[string]string, len(env.Headers)+3)
		injectTrace(ctx, h)
		if cid != "" {
			h[CorrelationHeader] = cid
		}
		for k, v := range env.Headers { // the envelope's own (a batch's callers') win
			h[k] = v
		}
		hb, err := json.Marshal(h)
		if err != nil {
			return nil, err
		}
		id[i], typ[i], agg[i], payload[i], headers[i], at[i] = env.ID, env.Type, env.AggregateID, string(env.Payload), string(hb), env.OccurredAt
	}
	return []any{pgdialect.Array(id), pgdialect.Array(typ), pgdialect.Array(agg), pgdialect.Array(payload), pgdialect.Array(headers), pgdialect.Array(at)}, nil
}

// NoFlushWait is a condition that turns off, for its statement's own transaction only,
// the wait for the commit to reach disk (synchronous_commit = off, set with set_config's
// is_local). The relay's bookkeeping (a claim, a publish mark, a release) may be lost in
// a crash of PostgreSQL or the machine without harm: a lost claim or release is a lease
// that lapses, a lost publish mark is an event published again, and every consumer
// deduplicates by event id (at-least-once delivery is the contract already). Such a
// commit is flushed by the WAL writer within wal_writer_delay, or sooner by any later
// synchronous commit: WAL is one sequence, so a crash loses only a suffix of it, never a
// mark while keeping a later one. TestCrash_AsyncMarksLost_EventsRedeliveredOnce (systest)
// loses them on purpose. Use it only in a statement that runs alone: in a caller's
// transaction it would make the caller's whole commit asynchronous.
const NoFlushWait = "set_config('synchronous_commit', 'off', true) IS NOT NULL"

var claimSQL = pgprep.New("outbox_claim", `UPDATE outbox o SET claimed_until = ?, claim_token = ?
		FROM (SELECT id FROM outbox c
		      WHERE c.published_at IS NULL AND c.id > 0 AND (c.claimed_until IS NULL OR c.claimed_until < ?::timestamptz)
		        AND (c.available_at IS NULL OR c.available_at <= ?::timestamptz)
		        AND c.id = (SELECT p.id FROM outbox p WHERE p.aggregate_id = c.aggregate_id
		                    AND p.published_at IS NULL ORDER BY p.id LIMIT 1)
		      ORDER BY c.id LIMIT ?::int FOR UPDATE SKIP LOCKED) c
		WHERE o.id = c.id AND `+NoFlushWait+`
		RETURNING o.id, o.event_id, o.type, o.aggregate_id, o.payload, o.headers, o.created_at, o.destination`)

// Claim leases up to n publishable rows to token until now+lease and returns them in
// id order. A row is publishable when it is unpublished, not leased by another relay,
// and no earlier row of its aggregate is still unpublished: so one order's events reach
// the broker in the order they were written, whichever relay takes them. Rows are
// claimed with FOR UPDATE SKIP LOCKED and no cursor, so a row that commits late is
// never skipped. The statement commits on its own: no transaction waits on the broker,
// and none waits for the claim's flush (NoFlushWait).
//
// The plan must not depend on fresh statistics: an outbox analyzed while every row was
// published tells the planner nothing is unpublished, and a flash sale's backlog comes
// before the next ANALYZE. Written as NOT EXISTS, the check then became a scan of the
// whole backlog per candidate (two million index entries per claim of 100 from a
// 20,000-row backlog) and the relay stalled. So: candidates come from
// outbox_claimable_idx (its "id > 0" predicate is implied by this WHERE alone), and
// "no earlier row" is asked as "this row is the first unpublished one of its
// aggregate", which only outbox_unpublished_aggregate_idx can answer: one short index
// range per candidate (migration 0010).
func Claim(ctx context.Context, db bun.IDB, token string, now time.Time, lease time.Duration, n int) ([]Row, error) {
	var rows []Row
	err := db.NewRaw(claimSQL.For(db), now.Add(lease), token, now, now, n).Scan(ctx, &rows)
	if err != nil {
		return nil, fmt.Errorf("outbox claim: %w", err)
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].ID < rows[j].ID })
	return rows, nil
}

var markSQL = pgprep.New("outbox_mark_published", `UPDATE outbox SET published_at = ?, claimed_until = NULL, attempts = attempts + 1,
		last_error = NULL WHERE id = ANY(?::bigint[]) AND published_at IS NULL AND `+NoFlushWait)

// MarkPublished records that the broker confirmed the rows, without waiting for the
// record's flush (NoFlushWait): lost in a crash, the rows are published again.
func MarkPublished(ctx context.Context, db bun.IDB, ids []int64, now time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := db.ExecContext(ctx, markSQL.For(db), now, pgdialect.Array(ids))
	if err != nil {
		return fmt.Errorf("outbox mark published: %w", err)
	}
	return nil
}

// Release gives up token's lease on rows whose publish failed, recording the attempt and
// its error (redacted), so another relay may take them at once. Lost in a crash, the
// lease lapses instead (NoFlushWait).
func Release(ctx context.Context, db bun.IDB, ids []int64, token, lastError string) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := db.ExecContext(ctx, `UPDATE outbox SET claimed_until = NULL, claim_token = NULL, attempts = attempts + 1,
		last_error = ? WHERE id IN (?) AND claim_token = ? AND published_at IS NULL AND `+NoFlushWait,
		clog.Redact(truncate(lastError, 500)), bun.List(ids), token)
	if err != nil {
		return fmt.Errorf("outbox release: %w", err)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// Backlog returns the number of unpublished rows that are due (a retry scheduled for
// later is not late) and how long the oldest has been due, at now.
func Backlog(ctx context.Context, db bun.IDB, now time.Time) (int, time.Duration, error) {
	var res struct {
		N      int        `bun:"n"`
		Oldest *time.Time `bun:"oldest"`
	}
	if err := db.NewRaw(`SELECT count(*) AS n, min(COALESCE(available_at, created_at)) AS oldest FROM outbox
		WHERE published_at IS NULL AND (available_at IS NULL OR available_at <= ?)`, now).Scan(ctx, &res); err != nil {
		return 0, 0, err
	}
	if res.Oldest == nil {
		return res.N, 0, nil
	}
	return res.N, max(now.Sub(*res.Oldest), 0), nil
}

// Scheduler returns ScheduleRetry over db, in the shape of broker.RetryScheduler: a
// retry asked for after delay is due at now()+delay. A nil clock panics (a programming
// error).
func Scheduler(db bun.IDB, now func() time.Time) func(ctx context.Context, consumer string, env event.Envelope, attempt int, delay time.Duration) error {
	if now == nil {
		panic("outbox: Scheduler with a nil clock")
	}
	return func(ctx context.Context, consumer string, env event.Envelope, attempt int, delay time.Duration) error {
		return ScheduleRetry(ctx, db, consumer, env, attempt, now().Add(delay))
	}
}
