package metrics

import (
	"context"
	"encoding/json"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/checkout-backend/checkout/internal/event"
)

// Publisher is what the outbox relay publishes with (outbox.Publisher).
type Publisher interface {
	Publish(ctx context.Context, msgs []amqp.Publishing) error
}

// CountPublished wraps the relay's publisher: every order event the broker confirmed
// counts its status in checkout_orders_total, and every order.paid adds its total to
// checkout_revenue_cents_total. Counting there sees each status change once, whichever
// process made it, and never one whose transaction rolled back.
func (m *Metrics) CountPublished(p Publisher) Publisher { return countingPublisher{p, m} }

type countingPublisher struct {
	next Publisher
	m    *Metrics
}

var statusOfType = func() map[string]string {
	s := map[string]string{}
	for _, st := range Statuses {
		s[event.TypeForStatus(st)] = st
	}
	return s
}()

func (c countingPublisher) Publish(ctx context.Context, msgs []amqp.Publishing) error {
	if err := c.next.Publish(ctx, msgs); err != nil {
		return err
	}
	for _, msg := range msgs {
		status, ok := statusOfType[msg.Type]
		if !ok {
			continue
		}
		c.m.OrderStatus(status)
		if msg.Type == event.OrderPaid {
			var env struct {
				Payload event.OrderPayload `json:"payload"`
			}
			if json.Unmarshal(msg.Body, &env) == nil {
				c.m.Revenue(env.Payload.Order.Currency, env.Payload.Order.TotalCents)
			}
		}
	}
	return nil
}
