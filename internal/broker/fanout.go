package broker

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/checkout-backend/checkout/internal/event"
)

// Follow consumes every event of the given types through a queue of this process's own
// (server-named, exclusive, deleted when the process goes), for fan-out to local
// subscribers. onConnect runs after each (re)connection, before events flow, so the
// caller can catch up on what it may have missed. It reconnects until ctx ends.
func (b *Broker) Follow(ctx context.Context, types []string, onConnect func(context.Context), h func(event.Envelope)) error {
	bo := reconnectBackOff()
	for {
		err := b.followOnce(ctx, types, onConnect, h)
		if ctx.Err() != nil {
			return nil
		}
		wait := bo.NextBackOff()
		b.logger.Warn("event feed disconnected; reconnecting", "error", err, "retryIn", wait.String())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

func (b *Broker) followOnce(ctx context.Context, types []string, onConnect func(context.Context), h func(event.Envelope)) error {
	// The connection declared the exchange; the queue is this process's own.
	ch, err := b.channel(256)
	if err != nil {
		return err
	}
	defer ch.Close()
	// Bounded in the broker too: an instance that cannot keep up loses its oldest
	// updates (subscribers catch up on the current state when they resubscribe).
	q, err := ch.QueueDeclare("", false, true, true, false, amqp.Table{"x-max-length": int32(100_000), "x-overflow": "drop-head"})
	if err != nil {
		return err
	}
	// This region's events and the other regions' (a subscriber may follow an order of
	// another region).
	for _, t := range types {
		for _, x := range []string{b.topo.Exchange(), b.topo.RemoteExchange()} {
			if err := ch.QueueBind(q.Name, t, x, false, nil); err != nil {
				return err
			}
		}
	}
	// Manual acks: the prefetch bounds what this instance holds in memory.
	deliveries, err := ch.Consume(q.Name, "", false, true, false, false, nil)
	if err != nil {
		return err
	}
	if onConnect != nil {
		onConnect(ctx)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case d, ok := <-deliveries:
			if !ok {
				return errors.New("feed channel closed")
			}
			var env event.Envelope
			if json.Unmarshal(d.Body, &env) == nil {
				h(env)
			}
			d.Ack(false)
		}
	}
}
