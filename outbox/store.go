// Package outbox is the transactional outbox: Store writes an event in the caller's
// transaction and lets relays claim, publish and mark rows; Relay publishes them to
// RabbitMQ with publisher confirms.
package outbox

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/uptrace/bun"

	"github.com/checkout-backend/checkout/internal/event"
)

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
	PublishedAt *time.Time        `bun:"published_at"`
	Attempts    int               `bun:"attempts"`
}

// Envelope turns the row back into the event it holds.
func (r Row) Envelope() event.Envelope {
	return event.Envelope{ID: r.EventID, Type: r.Type, AggregateID: r.AggregateID,
		OccurredAt: r.CreatedAt, Payload: r.Payload, Headers: r.Headers}
}

// HeaderInjector adds headers (trace context) to an event from ctx before it is stored.
type HeaderInjector func(ctx context.Context, headers map[string]string)

var injector HeaderInjector

// SetHeaderInjector installs the function that stamps trace context on new events.
func SetHeaderInjector(f HeaderInjector) { injector = f }

// Insert writes env in the caller's transaction (db is that bun.Tx), so the event
// commits or rolls back with the change it announces.
func Insert(ctx context.Context, db bun.IDB, env event.Envelope) error {
	if env.Headers == nil {
		env.Headers = map[string]string{}
	}
	if injector != nil {
		injector(ctx, env.Headers)
	}
	row := &Row{EventID: env.ID, Type: env.Type, AggregateID: env.AggregateID,
		Payload: env.Payload, Headers: env.Headers, CreatedAt: env.OccurredAt}
	// A trigger (migrations/0004) sends NOTIFY outbox, delivered at commit.
	if _, err := db.NewInsert().Model(row).ExcludeColumn("id", "published_at", "attempts").Exec(ctx); err != nil {
		return fmt.Errorf("outbox insert %s: %w", env.Type, err)
	}
	return nil
}
