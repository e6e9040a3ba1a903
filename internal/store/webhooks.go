package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"

	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/event"
	"github.com/checkout-backend/checkout/internal/webhook"
	"github.com/checkout-backend/checkout/outbox"
)

// Webhooks implements webhook.Store and the delivery bookkeeping of the workers.
type Webhooks struct {
	db  *bun.DB
	now func() time.Time
}

// NewWebhooks returns the webhooks adapter; now is the clock (time.Now when nil).
func NewWebhooks(db *bun.DB, now func() time.Time) *Webhooks {
	if now == nil {
		now = time.Now
	}
	return &Webhooks{db: db, now: now}
}

var _ webhook.Store = (*Webhooks)(nil)

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
	var r webhookRow
	q := "SELECT " + webhookCols + " FROM webhooks WHERE id = ?"
	if lock {
		q += " FOR UPDATE"
	}
	err := db.NewRaw(q, id).Scan(ctx, &r)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("webhook: %w", err)
	}
	return &r, nil
}

// Register stores a new endpoint.
func (s *Webhooks) Register(ctx context.Context, id, url string, events []string, secret string) (webhook.Webhook, error) {
	var r webhookRow
	err := s.db.NewRaw("INSERT INTO webhooks (id, url, events, secret) VALUES (?, ?, ?, ?) RETURNING "+webhookCols,
		id, url, pgdialect.Array(events), secret).Scan(ctx, &r)
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

// promote makes the next queued task of a chain pending and queues its delivery.
func promote(ctx context.Context, tx bun.IDB, webhookID, orderID string, now time.Time) error {
	var ids []string
	if err := tx.NewRaw(`UPDATE webhook_tasks SET status = 'PENDING', updated_at = ? WHERE id = (
			SELECT id FROM webhook_tasks WHERE webhook_id = ? AND order_id = ? AND status = 'QUEUED'
			ORDER BY sequence LIMIT 1) RETURNING id`, now, webhookID, orderID).Scan(ctx, &ids); err != nil {
		return fmt.Errorf("promote: %w", err)
	}
	for _, id := range ids {
		if err := queueDelivery(ctx, tx, id, now); err != nil {
			return err
		}
	}
	return nil
}

func queueDelivery(ctx context.Context, tx bun.IDB, taskID string, now time.Time) error {
	env, err := event.New(event.WebhookDeliver, taskID, now, event.DeliverPayload{TaskID: taskID})
	if err != nil {
		return err
	}
	return outbox.Insert(ctx, tx, env)
}

// FanOut turns an order event into one delivery task per endpoint that wants it, in one
// transaction with the consumer's inbox row. A task joins its order's chain behind any
// open task; a disabled endpoint's task waits PAUSED for enableWebhook.
func (s *Webhooks) FanOut(ctx context.Context, consumer string, env event.Envelope, body []byte, orderID string, sequence int) error {
	return InTx(ctx, s.db, func(ctx context.Context, tx bun.Tx) error {
		if first, err := MarkProcessed(ctx, tx, consumer, env.ID, s.now()); err != nil || !first {
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
			id := uuid.Must(uuid.NewV7()).String()
			if _, err := tx.ExecContext(ctx, `INSERT INTO webhook_tasks (id, webhook_id, event_id, event_type, order_id, sequence, body, status)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (webhook_id, event_id) DO NOTHING`,
				id, h.ID, env.ID, env.Type, orderID, sequence, json.RawMessage(body), status); err != nil {
				return fmt.Errorf("insert task: %w", err)
			}
			if status == "PENDING" {
				if err := queueDelivery(ctx, tx, id, s.now()); err != nil {
					return err
				}
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

// Task loads a task and its endpoint, or nil.
func (s *Webhooks) Task(ctx context.Context, id string) (*Task, error) {
	var t Task
	err := s.db.NewRaw(`SELECT t.id, t.webhook_id, t.event_id, t.event_type, t.order_id, t.sequence, t.body, t.status,
		t.attempts, t.created_at, w.url, w.secret, w.enabled, w.deleted_at
		FROM webhook_tasks t JOIN webhooks w ON w.id = t.webhook_id WHERE t.id = ?`, id).Scan(ctx, &t)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("task: %w", err)
	}
	return &t, nil
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
	Delivered  Outcome = iota // done; the next of its chain is queued
	RetryLater                // failed; try again after a delay
	Dead                      // failed for too long: given up, the chain goes on
	Paused                    // the endpoint was disabled: waits for enableWebhook
)

// DeliveryPolicy decides when to give up and when to disable an endpoint.
type DeliveryPolicy struct {
	MaxAge       time.Duration // a task failing longer than this is dead (>= 24h)
	DisableAfter int           // consecutive failed attempts that disable an endpoint
}

// RecordAttempt writes the attempt and moves the task and its endpoint accordingly.
func (s *Webhooks) RecordAttempt(ctx context.Context, t *Task, a Attempt, p DeliveryPolicy) (Outcome, error) {
	var out Outcome
	err := InTx(ctx, s.db, func(ctx context.Context, tx bun.Tx) error {
		h, err := getWebhook(ctx, tx, t.WebhookID, true)
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
			out = Delivered // settled meanwhile (a duplicate delivery message)
			return nil
		}
		var code, latency *int
		if a.StatusCode != 0 {
			code = &a.StatusCode
		}
		ms := int(a.Latency.Milliseconds())
		latency = &ms
		var errText *string
		if a.Err != "" {
			errText = &a.Err
		}
		var attempt int
		if err := tx.NewRaw("UPDATE webhook_tasks SET attempts = attempts + 1, updated_at = ? WHERE id = ? RETURNING attempts", s.now(), t.ID).Scan(ctx, &attempt); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO webhook_deliveries (id, webhook_id, task_id, event_id, event_type, attempt, status_code, latency_ms, error, delivered_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, uuid.Must(uuid.NewV7()).String(), t.WebhookID, t.ID, t.EventID, t.EventType,
			attempt, code, latency, errText, a.At); err != nil {
			return err
		}
		switch {
		case a.Success():
			out = Delivered
			if _, err := tx.ExecContext(ctx, "UPDATE webhook_tasks SET status = 'DELIVERED' WHERE id = ?", t.ID); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, "UPDATE webhooks SET consecutive_failures = 0 WHERE id = ?", t.WebhookID); err != nil {
				return err
			}
			return promote(ctx, tx, t.WebhookID, t.OrderID, s.now())
		case p.DisableAfter > 0 && h.Failures+1 >= p.DisableAfter:
			out = Paused
			reason := fmt.Sprintf("disabled after %d consecutive failed deliveries; last: %s", h.Failures+1, a.Err)
			if _, err := tx.ExecContext(ctx, "UPDATE webhooks SET enabled = false, disabled_reason = ?, consecutive_failures = consecutive_failures + 1, updated_at = ? WHERE id = ?", reason, s.now(), t.WebhookID); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, "UPDATE webhook_tasks SET status = 'PAUSED' WHERE webhook_id = ? AND status IN ('PENDING', 'QUEUED')", t.WebhookID)
			return err
		case a.At.Sub(t.CreatedAt) >= p.MaxAge:
			out = Dead
			if _, err := tx.ExecContext(ctx, "UPDATE webhook_tasks SET status = 'DEAD' WHERE id = ?", t.ID); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, "UPDATE webhooks SET consecutive_failures = consecutive_failures + 1 WHERE id = ?", t.WebhookID); err != nil {
				return err
			}
			return promote(ctx, tx, t.WebhookID, t.OrderID, s.now())
		default:
			out = RetryLater
			_, err := tx.ExecContext(ctx, "UPDATE webhooks SET consecutive_failures = consecutive_failures + 1 WHERE id = ?", t.WebhookID)
			return err
		}
	})
	return out, err
}

// Settle moves a pending task that will not be sent (endpoint deleted or disabled).
func (s *Webhooks) Settle(ctx context.Context, taskID, status string) error {
	_, err := s.db.ExecContext(ctx, "UPDATE webhook_tasks SET status = ?, updated_at = ? WHERE id = ? AND status = 'PENDING'", status, s.now(), taskID)
	return err
}
