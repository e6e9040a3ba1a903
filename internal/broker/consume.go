package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/checkout-backend/checkout/internal/event"
	clog "github.com/checkout-backend/checkout/internal/platform/log"
	"github.com/checkout-backend/checkout/internal/platform/telemetry"
)

// Handler processes one event. nil acks it; an error retries it later through the
// delay queues; a Permanent error sends it to the dead-letter queue at once.
type Handler func(ctx context.Context, env event.Envelope) error

type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent marks err as not worth retrying.
func Permanent(err error) error { return permanentError{err} }

// IsPermanent reports whether err was marked Permanent.
func IsPermanent(err error) bool { var p permanentError; return errors.As(err, &p) }

// ConsumeOptions bound a consumer.
type ConsumeOptions struct {
	// Prefetch is the number of unacked messages the broker sends ahead (default 16).
	Prefetch int
	// Concurrency is how many messages are handled at once (default 4).
	Concurrency int
	// HandlerTimeout bounds one handling (default 60s).
	HandlerTimeout time.Duration
	// Observe, when set, is told each outcome: "ack", "retry", "dead_letter", and
	// whether the delivery was a redelivery.
	Observe func(consumer, outcome string, redelivered bool, took time.Duration)
}

// Consume runs a consumer until ctx ends, reconnecting with backoff when the broker
// goes away. On shutdown it stops taking messages and finishes those in hand.
func (b *Broker) Consume(ctx context.Context, consumer string, opt ConsumeOptions, h Handler) error {
	if opt.Prefetch == 0 {
		opt.Prefetch = 16
	}
	if opt.Concurrency == 0 {
		opt.Concurrency = 4
	}
	if opt.HandlerTimeout == 0 {
		opt.HandlerTimeout = 60 * time.Second
	}
	bo := reconnectBackOff()
	for {
		started := time.Now()
		err := b.consumeOnce(ctx, consumer, opt, h)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(started) > 30*time.Second {
			bo.Reset()
		}
		wait := bo.NextBackOff()
		b.logger.Warn("consumer disconnected; reconnecting", "consumer", consumer, "error", err, "retryIn", wait.String())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

func (b *Broker) consumeOnce(ctx context.Context, consumer string, opt ConsumeOptions, h Handler) error {
	ch, err := b.channel(opt.Prefetch)
	if err != nil {
		return err
	}
	defer ch.Close()
	if err := ch.Confirm(false); err != nil {
		return err
	}
	deliveries, err := ch.Consume(b.topo.Queue(consumer), "", false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("consume %s: %w", b.topo.Queue(consumer), err)
	}
	sem := make(chan struct{}, opt.Concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return nil
		case d, ok := <-deliveries:
			if !ok {
				return errors.New("delivery channel closed")
			}
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				b.handle(ctx, ch, consumer, opt, h, d)
			}()
		}
	}
}

func (b *Broker) handle(ctx context.Context, ch *amqp.Channel, consumer string, opt ConsumeOptions, h Handler, d amqp.Delivery) {
	start := time.Now()
	observe := func(outcome string) {
		if opt.Observe != nil {
			opt.Observe(consumer, outcome, d.Redelivered, time.Since(start))
		}
	}
	var env event.Envelope
	if err := json.Unmarshal(d.Body, &env); err != nil || env.ID == "" {
		b.logger.Error("undecodable message dead-lettered", "consumer", consumer, "messageId", d.MessageId)
		d.Nack(false, false)
		observe("dead_letter")
		return
	}
	// Handling goes on through shutdown, so a message in hand is finished, not lost.
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opt.HandlerTimeout)
	defer cancel()
	if cid, ok := d.Headers["x-correlation-id"].(string); ok {
		hctx = clog.WithCorrelationID(hctx, cid)
	}
	hctx, span := telemetry.StartConsume(hctx, consumer, d)
	err := h(hctx, env)
	telemetry.End(span, err)
	if err == nil {
		d.Ack(false)
		observe("ack")
		return
	}
	attempt := 0
	switch v := d.Headers["x-attempt"].(type) {
	case int32:
		attempt = int(v)
	case int64:
		attempt = int(v)
	}
	m := amqp.Publishing{MessageId: d.MessageId, Type: d.Type, ContentType: d.ContentType,
		DeliveryMode: amqp.Persistent, Timestamp: d.Timestamp, Headers: amqp.Table{}, Body: d.Body}
	for k, v := range d.Headers {
		m.Headers[k] = v
	}
	m.Headers["x-last-error"] = clog.Redact(err.Error())
	target, outcome := "", ""
	delays := b.topo.delays(consumer)
	if b.topo.consumer(consumer).RetryForever && attempt >= len(delays) && len(delays) > 0 {
		attempt = len(delays) - 1 // the last delay, again
	}
	if IsPermanent(err) || attempt >= len(delays) {
		target, outcome = b.topo.DeadLetterQueue(consumer), "dead_letter"
		b.logger.ErrorContext(hctx, "event dead-lettered", "consumer", consumer, "eventId", env.ID, "type", env.Type, "attempt", attempt, "error", err)
	} else {
		m.Headers["x-attempt"] = int32(attempt + 1)
		target, outcome = b.topo.RetryQueue(consumer, attempt), "retry"
		if b.topo.consumer(consumer).Jitter {
			d := delays[attempt]
			m.Expiration = strconv.FormatInt(int64(d/2+rand.N(d/2+1))/int64(time.Millisecond), 10)
		}
		b.logger.WarnContext(hctx, "event handling failed; retrying later", "consumer", consumer, "eventId", env.ID, "type", env.Type, "attempt", attempt+1, "error", err)
	}
	if perr := b.publishToQueue(hctx, ch, target, m); perr != nil {
		// Could not park it: give it back to the queue; the inbox absorbs a duplicate.
		d.Nack(false, true)
		observe("requeue")
		return
	}
	d.Ack(false)
	observe(outcome)
}
