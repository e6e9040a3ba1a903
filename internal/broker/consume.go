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

// Handler processes one event. nil acks it; an error retries it later; a Permanent
// error sends it to the dead-letter queue at once.
type Handler func(ctx context.Context, env event.Envelope) error

type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent marks err as not worth retrying.
func Permanent(err error) error { return permanentError{err} }

// IsPermanent reports whether err was marked Permanent.
func IsPermanent(err error) bool { var p permanentError; return errors.As(err, &p) }

// RetryScheduler schedules attempt number attempt of env for consumer after delay (in
// PostgreSQL: outbox.Scheduler, whose clock makes the due time), so the relay publishes
// it then. The broker has no clock of its own: it only says how long to wait.
type RetryScheduler func(ctx context.Context, consumer string, env event.Envelope, attempt int, delay time.Duration) error

// ConsumeOptions bound a consumer.
type ConsumeOptions struct {
	// Prefetch is the number of unacked messages the broker sends ahead (default 16).
	Prefetch int
	// Concurrency is how many messages are handled at once (default 4).
	Concurrency int
	// HandlerTimeout bounds one handling (default 60s).
	HandlerTimeout time.Duration
	// Retry schedules a failed message's next attempt; without it a failure is
	// retried in place (as for an InPlace consumer).
	Retry RetryScheduler
	// Observe, when set, is told each outcome: "ack", "retry", "dead_letter",
	// "requeue", and whether the delivery was a redelivery.
	Observe func(consumer, outcome string, redelivered bool, took time.Duration)
	// CoalesceAcks acknowledges a run of finished deliveries with one multiple ack
	// once none before them is in hand (see acker): for a consumer whose deliveries
	// finish together, as a batch.
	CoalesceAcks bool
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
	var acks *acker
	if opt.CoalesceAcks {
		acks = newAcker(ch)
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
			if acks != nil {
				acks.delivered(d.DeliveryTag)
			}
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				b.handle(ctx, ch, consumer, opt, h, settler{d: d, acks: acks})
			}()
		}
	}
}

// attemptOf is a delivery's attempt number (1 for the first delivery).
func attemptOf(headers amqp.Table) int {
	switch v := headers[event.AttemptHeader].(type) {
	case string:
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			return n
		}
	case []byte:
		if n, err := strconv.Atoi(string(v)); err == nil && n > 0 {
			return n
		}
	case int32: // earlier releases
		return int(v) + 1
	case int64:
		return int(v) + 1
	}
	return 1
}

// delay is the wait before attempt next (2 for the first retry), drawn at random
// between half and all of its step of the ladder (the last step for attempts past it).
func (t Topology) delay(next int) time.Duration {
	if len(t.RetryDelays) == 0 {
		return time.Second
	}
	d := t.RetryDelays[min(next-2, len(t.RetryDelays)-1)]
	return d/2 + rand.N(d/2+1)
}

// settler settles one delivery: on its own, or through the channel's acker.
type settler struct {
	d    amqp.Delivery
	acks *acker
}

func (s settler) ack() {
	if s.acks != nil {
		s.acks.ack(s.d.DeliveryTag)
		return
	}
	s.d.Ack(false)
}

func (s settler) nack(requeue bool) {
	if s.acks != nil {
		s.acks.nack(s.d.DeliveryTag, requeue)
		return
	}
	s.d.Nack(false, requeue)
}

func (b *Broker) handle(ctx context.Context, ch *amqp.Channel, consumer string, opt ConsumeOptions, h Handler, s settler) {
	d := s.d
	start := time.Now()
	observe := func(outcome string) {
		if opt.Observe != nil {
			opt.Observe(consumer, outcome, d.Redelivered, time.Since(start))
		}
	}
	var env event.Envelope
	if err := json.Unmarshal(d.Body, &env); err != nil || env.ID == "" {
		b.logger.Error("undecodable message dead-lettered", "consumer", consumer, "messageId", d.MessageId)
		s.nack(false)
		observe("dead_letter")
		return
	}
	c := b.topo.consumer(consumer)
	attempt := attemptOf(d.Headers)
	// Handling goes on through shutdown, so a message in hand is finished, not lost.
	run := func() error {
		hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opt.HandlerTimeout)
		defer cancel()
		if cid, ok := d.Headers["x-correlation-id"].(string); ok {
			hctx = clog.WithCorrelationID(hctx, cid)
		}
		hctx, span := StartConsume(hctx, consumer, d)
		err := h(hctx, env)
		telemetry.End(span, err)
		return err
	}
	err := run()
	if err != nil && !IsPermanent(err) && (c.InPlace || opt.Retry == nil) {
		// An ordered consumer keeps the message in hand: the next waits behind it.
		bo := reconnectBackOff()
		bo.MaxInterval = 10 * time.Second
		for err != nil && !IsPermanent(err) {
			wait := bo.NextBackOff()
			b.logger.Warn("event handling failed; retrying in place", "consumer", consumer, "eventId", env.ID, "type", env.Type, "retryIn", wait.String(), "error", err)
			select {
			case <-ctx.Done():
				s.nack(true) // shutting down: back to the queue, in its place
				observe("requeue")
				return
			case <-time.After(wait):
			}
			err = run()
		}
	}
	if err == nil {
		s.ack()
		observe("ack")
		return
	}
	if IsPermanent(err) || attempt > len(b.topo.RetryDelays) && !c.RetryForever {
		b.logger.Error("event dead-lettered", "consumer", consumer, "eventId", env.ID, "type", env.Type, "attempt", attempt, "error", err)
		m := amqp.Publishing{MessageId: d.MessageId, Type: d.Type, ContentType: d.ContentType,
			DeliveryMode: amqp.Persistent, Timestamp: d.Timestamp, Headers: amqp.Table{}, Body: d.Body}
		for k, v := range d.Headers {
			m.Headers[k] = v
		}
		m.Headers["x-last-error"] = clog.Redact(err.Error())
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		perr := publishToQueue(pctx, ch, b.topo.DeadLetterQueue(consumer), m)
		cancel()
		if perr != nil {
			s.nack(true) // could not park it: back to the queue; the inbox absorbs a duplicate
			observe("requeue")
			return
		}
		s.ack()
		observe("dead_letter")
		return
	}
	delay := b.topo.delay(attempt + 1)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	serr := opt.Retry(sctx, consumer, env, attempt+1, delay)
	cancel()
	if serr != nil {
		// The retry could not be scheduled (the database is away): the broker keeps the
		// message; a short pause first, so a dead database is not hammered.
		b.logger.Warn("retry not scheduled; the message goes back to the queue", "consumer", consumer, "eventId", env.ID, "error", serr)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
		s.nack(true)
		observe("requeue")
		return
	}
	b.logger.WarnContext(ctx, "event handling failed; retry scheduled", "consumer", consumer, "eventId", env.ID, "type", env.Type,
		"attempt", attempt, "retryIn", delay.String(), "error", err)
	s.ack()
	observe("retry")
}
