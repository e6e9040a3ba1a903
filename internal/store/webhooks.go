package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"

	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/event"
	"github.com/checkout-backend/checkout/internal/webhook"
)

// Webhooks implements webhook.Store and the delivery bookkeeping of the workers.
type Webhooks struct {
	db  *bun.DB
	now func() time.Time
	// bind, when set, binds the fan-out's queue to event types before an endpoint that
	// wants them is stored (BindWith).
	bind func(ctx context.Context, types []string) error
}

// NewWebhooks returns the webhooks adapter; now is its clock (a nil clock panics).
func NewWebhooks(db *bun.DB, now func() time.Time) *Webhooks {
	mustClock("NewWebhooks", now)
	return &Webhooks{db: db, now: now}
}

var _ webhook.Store = (*Webhooks)(nil)

// BindWith makes Register bind the fan-out's queue to a new endpoint's event types, with
// bind, before the endpoint is stored: with a fan-out bound only to the types endpoints
// want (Demand), an event of a type nobody wanted until now is queued for the fan-out
// from the moment the endpoint exists. A failed bind fails the registration
// (checkout.ErrUnavailable). It returns s.
func (s *Webhooks) BindWith(bind func(ctx context.Context, types []string) error) *Webhooks {
	s.bind = bind
	return s
}

// routesLock is the transaction-level advisory lock (class, then the schema's hash) that
// keeps the fan-out's bindings and the endpoints in step: a registration holds it shared
// from its bind to its commit, Demand exclusively while it reads what is wanted and
// rebinds. So Demand never unbinds a type an endpoint committed meanwhile wants, and two
// Demands (instances connecting at once) take turns.
const routesLock = "(hashtext('checkout.webhook-routes'), hashtext(current_schema()))"

// wantedTypes are the order event types endpoints with these events take.
func wantedTypes(events ...[]string) []string {
	var out []string
	for _, typ := range event.OrderTypes {
		for _, e := range events {
			if (webhook.Webhook{Events: e}).Wants(typ) {
				out = append(out, typ)
				break
			}
		}
	}
	return out
}

// Demand calls route with the order event types that endpoints not deleted take, while
// no endpoint can be registered (Topology.Demand of the fan-out's queue). It waits for a
// registration under way, and reports false, without calling route, if that takes longer
// than routesWait: the caller keeps every type bound and asks again later. (A
// registration whose bind opens a new broker connection waits for that connection's
// declare, which waits here.)
func (s *Webhooks) Demand(ctx context.Context, route func(types []string) error) (bool, error) {
	err := InTx(ctx, s.db, func(ctx context.Context, tx bun.Tx) error {
		if _, err := tx.ExecContext(ctx, "SELECT set_config('lock_timeout', ?, true)", routesWait.String()); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock"+routesLock); err != nil {
			if PgCode(err) == pgLockNotAvailable {
				return errRoutesBusy
			}
			return err
		}
		events, err := endpointEvents(ctx, tx)
		if err != nil {
			return err
		}
		return route(wantedTypes(events...))
	})
	switch {
	case errors.Is(err, errRoutesBusy):
		return false, nil
	case err != nil:
		return false, mapErr(fmt.Errorf("webhook routes: %w", err))
	}
	return true, nil
}

// routesWait bounds Demand's wait for the registrations under way.
const routesWait = 5 * time.Second

// pgLockNotAvailable is lock_timeout's SQLSTATE.
const pgLockNotAvailable = "55P03"

var errRoutesBusy = errors.New("webhook routes: a registration holds them")

type webhookRow struct {
	ID             string     `bun:"id"`
	URL            string     `bun:"url"`
	Events         []string   `bun:"events,array"`
	Secret         string     `bun:"secret"`
	Enabled        bool       `bun:"enabled"`
	DisabledReason *string    `bun:"disabled_reason"`
	Failures       int        `bun:"consecutive_failures"`
	CreatedAt      time.Time  `bun:"created_at"`
	DeletedAt      *time.Time `bun:"deleted_at"`
}

func (r webhookRow) webhook() webhook.Webhook {
	return webhook.Webhook{ID: r.ID, URL: r.URL, Events: r.Events, Enabled: r.Enabled, DisabledReason: r.DisabledReason, CreatedAt: r.CreatedAt}
}

const webhookCols = "id, url, events, secret, enabled, disabled_reason, consecutive_failures, created_at, deleted_at"

func notFound() error { return checkout.Errorf(checkout.NotFound, []string{"id"}, "webhook not found") }

func getWebhook(ctx context.Context, db bun.IDB, id string, lock bool) (*webhookRow, error) {
	if _, err := uuid.Parse(id); err != nil {
		return nil, nil
	}
	r, err := oneRow[webhookRow](ctx, db, "SELECT "+webhookCols+" FROM webhooks WHERE id = ?", lock, id)
	if err != nil || r == nil {
		return nil, wrapf(err, "webhook")
	}
	return r, nil
}

// Register stores a new endpoint.
func (s *Webhooks) Register(ctx context.Context, id, url string, events []string, secret string) (webhook.Webhook, error) {
	var r webhookRow
	// created_at orders List: the service's clock, like every other row's time.
	now := s.now()
	err := InTx(ctx, s.db, func(ctx context.Context, tx bun.Tx) error {
		if s.bind != nil {
			// Bound before the endpoint is stored, and before Demand can read the
			// endpoints again: every event published once it is stored reaches the fan-out.
			if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock_shared"+routesLock); err != nil {
				return err
			}
			if err := s.bind(ctx, wantedTypes(events)); err != nil {
				return fmt.Errorf("%w: bind the fan-out's queue: %w", checkout.ErrUnavailable, err)
			}
		}
		return tx.NewRaw("INSERT INTO webhooks (id, url, events, secret, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING "+webhookCols,
			id, url, pgdialect.Array(events), secret, now, now).Scan(ctx, &r)
	})
	if err != nil {
		return webhook.Webhook{}, fmt.Errorf("register webhook: %w", err)
	}
	return r.webhook(), nil
}

// List returns the endpoints that are not deleted.
func (s *Webhooks) List(ctx context.Context) ([]webhook.Webhook, error) {
	var rows []webhookRow
	if err := s.db.NewRaw("SELECT "+webhookCols+" FROM webhooks WHERE deleted_at IS NULL ORDER BY created_at, id").Scan(ctx, &rows); err != nil {
		return nil, fmt.Errorf("webhooks: %w", err)
	}
	out := make([]webhook.Webhook, len(rows))
	for i, r := range rows {
		out[i] = r.webhook()
	}
	return out, nil
}

// Get returns an endpoint that is not deleted, or nil.
func (s *Webhooks) Get(ctx context.Context, id string) (*webhook.Webhook, error) {
	r, err := getWebhook(ctx, s.db, id, false)
	if err != nil || r == nil || r.DeletedAt != nil {
		return nil, err
	}
	w := r.webhook()
	return &w, nil
}

// Delete removes an endpoint and cancels what was still to be delivered to it.
func (s *Webhooks) Delete(ctx context.Context, id string) (webhook.Webhook, error) {
	return s.update(ctx, id, func(ctx context.Context, tx bun.Tx, r *webhookRow) error {
		if _, err := tx.ExecContext(ctx, "UPDATE webhooks SET deleted_at = ?, enabled = false, updated_at = ? WHERE id = ?", s.now(), s.now(), id); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "UPDATE webhook_tasks SET status = 'CANCELLED', updated_at = ? WHERE webhook_id = ? AND status IN ('QUEUED', 'PENDING', 'PAUSED')", s.now(), id); err != nil {
			return err
		}
		r.Enabled = false
		return nil
	})
}

// Enable re-enables an endpoint and replays what it missed: paused tasks queue again and
// the head of each order's chain is sent, so order is kept.
func (s *Webhooks) Enable(ctx context.Context, id string) (webhook.Webhook, error) {
	return s.update(ctx, id, func(ctx context.Context, tx bun.Tx, r *webhookRow) error {
		if _, err := tx.ExecContext(ctx, "UPDATE webhooks SET enabled = true, disabled_reason = NULL, consecutive_failures = 0, updated_at = ? WHERE id = ?", s.now(), id); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "UPDATE webhook_tasks SET status = 'QUEUED', updated_at = ? WHERE webhook_id = ? AND status = 'PAUSED'", s.now(), id); err != nil {
			return err
		}
		var orders []string
		if err := tx.NewRaw(`SELECT DISTINCT order_id FROM webhook_tasks t WHERE webhook_id = ? AND status = 'QUEUED'
			AND NOT EXISTS (SELECT 1 FROM webhook_tasks p WHERE p.webhook_id = t.webhook_id AND p.order_id = t.order_id AND p.status = 'PENDING')`, id).Scan(ctx, &orders); err != nil {
			return err
		}
		for _, o := range orders {
			if err := lockChain(ctx, tx, id, o); err != nil {
				return err
			}
			if err := promote(ctx, tx, id, o, s.now()); err != nil {
				return err
			}
		}
		r.Enabled, r.DisabledReason = true, nil
		return nil
	})
}

// update loads an endpoint that is not deleted under its row lock, lets fn change it in
// the transaction, and returns it as fn left it.
func (s *Webhooks) update(ctx context.Context, id string, fn func(ctx context.Context, tx bun.Tx, r *webhookRow) error) (webhook.Webhook, error) {
	var out webhook.Webhook
	err := InTx(ctx, s.db, func(ctx context.Context, tx bun.Tx) error {
		r, err := getWebhook(ctx, tx, id, true)
		if err != nil {
			return err
		}
		if r == nil || r.DeletedAt != nil {
			return notFound()
		}
		if err := fn(ctx, tx, r); err != nil {
			return err
		}
		out = r.webhook()
		return nil
	})
	return out, err
}

type deliveryRow struct {
	ID          string    `bun:"id"`
	EventID     string    `bun:"event_id"`
	EventType   string    `bun:"event_type"`
	Attempt     int       `bun:"attempt"`
	StatusCode  *int      `bun:"status_code"`
	LatencyMs   *int      `bun:"latency_ms"`
	Error       *string   `bun:"error"`
	DeliveredAt time.Time `bun:"delivered_at"`
}

// Deliveries pages an endpoint's attempts, newest first.
func (s *Webhooks) Deliveries(ctx context.Context, webhookID string, first int, after *webhook.Cursor) (webhook.Page, error) {
	if r, err := getWebhook(ctx, s.db, webhookID, false); err != nil || r == nil {
		return webhook.Page{}, err
	}
	var rows []deliveryRow
	q := s.db.NewRaw(`SELECT id, event_id, event_type, attempt, status_code, latency_ms, error, delivered_at FROM webhook_deliveries
		WHERE webhook_id = ? ORDER BY delivered_at DESC, id DESC LIMIT ?`, webhookID, first+1)
	if after != nil {
		q = s.db.NewRaw(`SELECT id, event_id, event_type, attempt, status_code, latency_ms, error, delivered_at FROM webhook_deliveries
			WHERE webhook_id = ? AND (delivered_at, id) < (?, ?::uuid) ORDER BY delivered_at DESC, id DESC LIMIT ?`, webhookID, after.DeliveredAt, after.ID, first+1)
	}
	if err := q.Scan(ctx, &rows); err != nil {
		return webhook.Page{}, fmt.Errorf("deliveries: %w", err)
	}
	page := webhook.Page{HasNext: len(rows) > first, Deliveries: []webhook.Delivery{}}
	if page.HasNext {
		rows = rows[:first]
	}
	for _, r := range rows {
		page.Deliveries = append(page.Deliveries, webhook.Delivery(r))
	}
	return page, nil
}

// lockChain serializes the changes of one (endpoint, order) chain: the fan-out adding a
// task behind an open one, and a delivery settling the head and promoting the next,
// so a task is never left queued behind a head that was settled meanwhile.
func lockChain(ctx context.Context, tx bun.IDB, webhookID, orderID string) error {
	_, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(hashtextextended(?, 1))", webhookID+"/"+orderID)
	return err
}

// promote makes the next queued task of a chain the pending head, due at once.
func promote(ctx context.Context, tx bun.IDB, webhookID, orderID string, now time.Time) error {
	if _, err := tx.ExecContext(ctx, `UPDATE webhook_tasks SET status = 'PENDING', next_attempt_at = ?, lease_until = NULL, updated_at = ? WHERE id = (
			SELECT id FROM webhook_tasks WHERE webhook_id = ? AND order_id = ? AND status = 'QUEUED'
			ORDER BY sequence LIMIT 1)`, now, now, webhookID, orderID); err != nil {
		return fmt.Errorf("promote: %w", err)
	}
	return nil
}

// Wanted reports whether any endpoint that is not deleted takes events of type typ: the
// fan-out of an event nobody wants writes nothing (one read, no transaction).
func (s *Webhooks) Wanted(ctx context.Context, typ string) (bool, error) {
	events, err := endpointEvents(ctx, s.db)
	if err != nil {
		return false, mapErr(fmt.Errorf("webhooks: %w", err))
	}
	for _, e := range events {
		if (webhook.Webhook{Events: e}).Wants(typ) {
			return true, nil
		}
	}
	return false, nil
}

// endpointEvents reads the event types of each endpoint that is not deleted.
func endpointEvents(ctx context.Context, db bun.IDB) ([][]string, error) {
	var rows []struct {
		Events []string `bun:"events,array"`
	}
	if err := db.NewRaw(hotWantedEvents.For(db)).Scan(ctx, &rows); err != nil {
		return nil, err
	}
	events := make([][]string, len(rows))
	for i, r := range rows {
		events[i] = r.Events
	}
	return events, nil
}

// FanOut turns an order event into one delivery task per endpoint that wants it, in one
// transaction with the consumer's inbox row. A task joins its order's chain behind any
// open task (QUEUED), or heads it, due at once (PENDING); a disabled endpoint's task
// waits PAUSED for enableWebhook.
func (s *Webhooks) FanOut(ctx context.Context, consumer string, env event.Envelope, body []byte, orderID string, sequence int) error {
	return InTx(ctx, s.db, func(ctx context.Context, tx bun.Tx) error {
		now := s.now()
		if first, err := MarkProcessed(ctx, tx, consumer, env.ID, now); err != nil || !first {
			return err
		}
		var hooks []webhookRow
		if err := tx.NewRaw("SELECT "+webhookCols+" FROM webhooks WHERE deleted_at IS NULL ORDER BY id FOR SHARE").Scan(ctx, &hooks); err != nil {
			return err
		}
		for _, h := range hooks {
			if !h.webhook().Wants(env.Type) {
				continue
			}
			if err := lockChain(ctx, tx, h.ID, orderID); err != nil {
				return err
			}
			status := "PENDING"
			if !h.Enabled {
				status = "PAUSED"
			} else {
				var open bool
				if err := tx.NewRaw(`SELECT EXISTS (SELECT 1 FROM webhook_tasks WHERE webhook_id = ? AND order_id = ?
					AND status IN ('QUEUED', 'PENDING', 'PAUSED'))`, h.ID, orderID).Scan(ctx, &open); err != nil {
					return err
				}
				if open {
					status = "QUEUED"
				}
			}
			var due *time.Time
			if status == "PENDING" {
				due = &now
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO webhook_tasks (id, webhook_id, event_id, event_type, order_id, sequence, body, status,
				next_attempt_at, created_at, updated_at)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (webhook_id, event_id) DO NOTHING`,
				uuid.Must(uuid.NewV7()).String(), h.ID, env.ID, env.Type, orderID, sequence, json.RawMessage(body), status, due, env.OccurredAt, now); err != nil {
				return fmt.Errorf("insert task: %w", err)
			}
		}
		return nil
	})
}

// Task is a delivery task with what is needed to send it.
type Task struct {
	ID        string          `bun:"id"`
	WebhookID string          `bun:"webhook_id"`
	EventID   string          `bun:"event_id"`
	EventType string          `bun:"event_type"`
	OrderID   string          `bun:"order_id"`
	Sequence  int             `bun:"sequence"`
	Body      json.RawMessage `bun:"body"`
	Status    string          `bun:"status"`
	Attempts  int             `bun:"attempts"`
	CreatedAt time.Time       `bun:"created_at"`

	URL       string     `bun:"url"`
	Secret    string     `bun:"secret"`
	Enabled   bool       `bun:"enabled"`
	DeletedAt *time.Time `bun:"deleted_at"`
}

const taskSelect = `SELECT t.id, t.webhook_id, t.event_id, t.event_type, t.order_id, t.sequence, t.body, t.status,
	t.attempts, t.created_at, w.url, w.secret, w.enabled, w.deleted_at
	FROM webhook_tasks t JOIN webhooks w ON w.id = t.webhook_id`

// Task loads a task and its endpoint, or nil.
func (s *Webhooks) Task(ctx context.Context, id string) (*Task, error) {
	var t Task
	err := s.db.NewRaw(taskSelect+" WHERE t.id = ?", id).Scan(ctx, &t)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("task: %w", err)
	}
	return &t, nil
}

// ClaimDue leases up to n heads of chains whose next attempt is due at now, for lease
// (FOR UPDATE SKIP LOCKED: several workers share them), oldest due first.
func (s *Webhooks) ClaimDue(ctx context.Context, now time.Time, n int, lease time.Duration) ([]Task, error) {
	var ids []string
	if err := s.db.NewRaw(`UPDATE webhook_tasks t SET lease_until = ? FROM (
			SELECT id FROM webhook_tasks WHERE status = 'PENDING' AND next_attempt_at <= ?
			  AND (lease_until IS NULL OR lease_until < ?)
			ORDER BY next_attempt_at LIMIT ? FOR UPDATE SKIP LOCKED) c
		WHERE t.id = c.id RETURNING t.id`, now.Add(lease), now, now, n).Scan(ctx, &ids); err != nil {
		return nil, mapErr(fmt.Errorf("claim deliveries: %w", err))
	}
	if len(ids) == 0 {
		return nil, nil
	}
	var tasks []Task
	if err := s.db.NewRaw(taskSelect+" WHERE t.id IN (?) ORDER BY t.created_at", bun.List(ids)).Scan(ctx, &tasks); err != nil {
		return nil, mapErr(fmt.Errorf("claimed deliveries: %w", err))
	}
	return tasks, nil
}

// Release gives a claimed task back without an attempt (its endpoint was busy).
func (s *Webhooks) Release(ctx context.Context, taskID string) error {
	_, err := s.db.ExecContext(ctx, "UPDATE webhook_tasks SET lease_until = NULL WHERE id = ? AND status = 'PENDING'", taskID)
	return mapErr(err)
}

// RepairChains makes the next task of any chain whose head went missing (QUEUED tasks,
// no PENDING or PAUSED one) its head, due at now, so no chain stalls. It returns how
// many it repaired.
func (s *Webhooks) RepairChains(ctx context.Context, now time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE webhook_tasks SET status = 'PENDING', next_attempt_at = ?, lease_until = NULL, updated_at = ?
		WHERE id IN (SELECT DISTINCT ON (webhook_id, order_id) id FROM webhook_tasks q WHERE status = 'QUEUED'
			AND NOT EXISTS (SELECT 1 FROM webhook_tasks p WHERE p.webhook_id = q.webhook_id AND p.order_id = q.order_id
			                AND p.status IN ('PENDING', 'PAUSED'))
			ORDER BY webhook_id, order_id, sequence)`, now, now)
	if err != nil {
		return 0, mapErr(fmt.Errorf("repair chains: %w", err))
	}
	return res.RowsAffected()
}

// Attempt is the result of one delivery attempt.
type Attempt struct {
	StatusCode int // 0 when no answer
	Latency    time.Duration
	Err        string // transport error or non-2xx summary
	At         time.Time
}

// Success reports a 2xx answer.
func (a Attempt) Success() bool { return a.Err == "" && a.StatusCode >= 200 && a.StatusCode < 300 }

// Outcome is what became of a task after an attempt.
type Outcome int

// Outcomes of RecordAttempt.
const (
	Delivered  Outcome = iota // done; the next of its chain is due
	RetryLater                // failed; tried again when the schedule says
	Dead                      // failed for too long: given up, the chain goes on
	Paused                    // the endpoint was disabled: waits for enableWebhook
)

// DeliveryPolicy decides when to try again, when to give up and when to disable an
// endpoint.
type DeliveryPolicy struct {
	Retry        webhook.Retry
	DisableAfter int // consecutive failed attempts that disable an endpoint
	// Jitter draws the retry waits' jitter in [0, 1] (default math/rand).
	Jitter func() float64
}

// RecordAttempt writes the attempt and moves the task and its endpoint as the policy
// says: delivered (the next of the chain is due at once), retried at the schedule's
// time, dead (the chain goes on), or paused with its endpoint disabled.
func (s *Webhooks) RecordAttempt(ctx context.Context, t *Task, a Attempt, p DeliveryPolicy) (Outcome, time.Time, error) {
	var out Outcome
	var next time.Time
	err := InTx(ctx, s.db, func(ctx context.Context, tx bun.Tx) error {
		// The endpoint's row is locked only when its failure count changes: a failed
		// attempt, or the first success after failures. Every other delivery to the
		// endpoint (almost all of them) leaves it alone, so deliveries to one partner do
		// not queue on its row, nor does the fan-out's FOR SHARE wait behind them.
		lock := !a.Success()
		h, err := getWebhook(ctx, tx, t.WebhookID, lock)
		if err == nil && h != nil && !lock && h.Failures != 0 {
			h, err = getWebhook(ctx, tx, t.WebhookID, true)
		}
		if err != nil || h == nil {
			return err
		}
		if err := lockChain(ctx, tx, t.WebhookID, t.OrderID); err != nil {
			return err
		}
		var status string
		if err := tx.NewRaw("SELECT status FROM webhook_tasks WHERE id = ? FOR UPDATE", t.ID).Scan(ctx, &status); err != nil {
			return err
		}
		if status != "PENDING" {
			out = Delivered // settled meanwhile
			return nil
		}
		var code *int
		if a.StatusCode != 0 {
			code = &a.StatusCode
		}
		ms := int(a.Latency.Milliseconds())
		var errText *string
		if a.Err != "" {
			errText = &a.Err
		}
		now := s.now()
		var attempt int
		if err := tx.NewRaw("UPDATE webhook_tasks SET attempts = attempts + 1, lease_until = NULL, updated_at = ? WHERE id = ? RETURNING attempts", now, t.ID).Scan(ctx, &attempt); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO webhook_deliveries (id, webhook_id, task_id, event_id, event_type, attempt, status_code, latency_ms, error, delivered_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, uuid.Must(uuid.NewV7()).String(), t.WebhookID, t.ID, t.EventID, t.EventType,
			attempt, code, ms, errText, a.At); err != nil {
			return err
		}
		if a.Success() {
			out = Delivered
			if _, err := tx.ExecContext(ctx, "UPDATE webhook_tasks SET status = 'DELIVERED' WHERE id = ?", t.ID); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, "UPDATE webhooks SET consecutive_failures = 0 WHERE id = ? AND consecutive_failures <> 0", t.WebhookID); err != nil {
				return err
			}
			return promote(ctx, tx, t.WebhookID, t.OrderID, now)
		}
		if p.DisableAfter > 0 && h.Failures+1 >= p.DisableAfter {
			out = Paused
			reason := fmt.Sprintf("disabled after %d consecutive failed deliveries; last: %s", h.Failures+1, a.Err)
			if _, err := tx.ExecContext(ctx, "UPDATE webhooks SET enabled = false, disabled_reason = ?, consecutive_failures = consecutive_failures + 1, updated_at = ? WHERE id = ?", reason, now, t.WebhookID); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, "UPDATE webhook_tasks SET status = 'PAUSED', lease_until = NULL WHERE webhook_id = ? AND status IN ('PENDING', 'QUEUED')", t.WebhookID)
			return err
		}
		if _, err := tx.ExecContext(ctx, "UPDATE webhooks SET consecutive_failures = consecutive_failures + 1 WHERE id = ?", t.WebhookID); err != nil {
			return err
		}
		jitter := p.Jitter
		if jitter == nil {
			jitter = rand.Float64
		}
		var dead bool
		next, dead = p.Retry.Next(attempt, t.CreatedAt, a.At, jitter())
		if dead {
			out = Dead
			if _, err := tx.ExecContext(ctx, "UPDATE webhook_tasks SET status = 'DEAD' WHERE id = ?", t.ID); err != nil {
				return err
			}
			return promote(ctx, tx, t.WebhookID, t.OrderID, now)
		}
		out = RetryLater
		_, err = tx.ExecContext(ctx, "UPDATE webhook_tasks SET next_attempt_at = ? WHERE id = ?", next, t.ID)
		return err
	})
	return out, next, err
}

// Settle moves a pending task that will not be sent (endpoint deleted or disabled).
func (s *Webhooks) Settle(ctx context.Context, taskID, status string) error {
	_, err := s.db.ExecContext(ctx, "UPDATE webhook_tasks SET status = ?, lease_until = NULL, updated_at = ? WHERE id = ? AND status = 'PENDING'", status, s.now(), taskID)
	return err
}
