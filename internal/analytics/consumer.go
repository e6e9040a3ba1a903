package analytics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/google/uuid"
	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/checkout-backend/checkout/internal/broker"
	"github.com/checkout-backend/checkout/internal/event"
)

// ConsumerName is the analytics consumer's queue name.
const ConsumerName = "analytics"

// Consumer is the analytics part of the broker topology: a quorum queue of its own,
// bound to every order event and cart.created.
var Consumer = broker.Consumer{Name: ConsumerName, Types: Types}

// Sink stores batches of facts.
type Sink interface {
	// Write stores b durably: when it returns nil every row of b is kept, whatever
	// happens to the process next. An error means some rows may or may not be kept
	// (the events are delivered again, and their rows are told apart by event_id).
	Write(ctx context.Context, b Batch) error
}

// StockReader reads the available units of SKUs (on hand less reserved, all warehouses).
type StockReader func(ctx context.Context, skus []string) (map[string]int, error)

// Options tune the consumer.
type Options struct {
	// MaxBatch is the most events written in one batch, and the number of unacked
	// messages the consumer holds (default 500).
	MaxBatch int
	// FlushInterval is the longest an event waits for its batch to be written
	// (default 5s).
	FlushInterval time.Duration
	// WriteTimeout bounds the retries of one failing batch write before its events are
	// given back to the broker (default 30s).
	WriteTimeout time.Duration
	// Stock, when set, is read at each flush for the SKUs of the batch's order lines.
	Stock StockReader
	// Observe, when set, is told each flush: events, rows and the outcome.
	Observe func(events, rows int, took time.Duration, err error)
	Logger  *slog.Logger
}

// Analytics is the analytics consumer: its handler takes an event's facts into the
// current batch and returns once the batch is written (so the broker acks an event only
// after its rows are durable); a flusher writes a batch when it holds MaxBatch events
// or its first event has waited FlushInterval.
type Analytics struct {
	sink    Sink
	now     func() time.Time
	opt     Options
	in      chan pending
	flushed *lru.Cache[string, struct{}]
}

type pending struct {
	env   event.Envelope
	facts Batch
	done  chan error
}

// New returns the consumer writing to sink; now is its clock (when stock is observed).
// A nil sink or clock is refused: the clock is a dependency, never defaulted.
func New(sink Sink, now func() time.Time, opt Options) (*Analytics, error) {
	if sink == nil || now == nil {
		return nil, errors.New("analytics: nil sink or clock")
	}
	if opt.MaxBatch <= 0 {
		opt.MaxBatch = 500
	}
	if opt.FlushInterval <= 0 {
		opt.FlushInterval = 5 * time.Second
	}
	if opt.WriteTimeout <= 0 {
		opt.WriteTimeout = 30 * time.Second
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	// Recently written event ids: a redelivery of an event whose ack was lost (the
	// channel dropped after the write) is acked without a second copy of its rows.
	flushed, err := lru.New[string, struct{}](8 * opt.MaxBatch)
	if err != nil {
		return nil, err
	}
	return &Analytics{sink: sink, now: now, opt: opt, in: make(chan pending, opt.MaxBatch), flushed: flushed}, nil
}

// ConsumeOptions are the broker options that let a whole batch be in hand at once, and
// acknowledge it as a batch (a few multiple acks, not one per event).
func (a *Analytics) ConsumeOptions() broker.ConsumeOptions {
	return broker.ConsumeOptions{Prefetch: a.opt.MaxBatch, Concurrency: a.opt.MaxBatch,
		HandlerTimeout: a.opt.FlushInterval + a.opt.WriteTimeout + 30*time.Second, CoalesceAcks: true}
}

// Handle is the broker.Handler: it returns nil once env's facts are written.
func (a *Analytics) Handle(ctx context.Context, env event.Envelope) error {
	facts, err := Facts(env)
	if err != nil {
		return broker.Permanent(err)
	}
	if facts.Len() == 0 {
		return nil
	}
	if a.flushed.Contains(env.ID) {
		return nil
	}
	p := pending{env: env, facts: facts, done: make(chan error, 1)}
	select {
	case a.in <- p:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		// The batch may still be written; the redelivery is told apart by event_id.
		return ctx.Err()
	}
}

// Run consumes the analytics queue of b until ctx ends; the batch in hand at shutdown
// is written before it returns. opt's Prefetch, Concurrency and HandlerTimeout are
// replaced by the consumer's own (ConsumeOptions).
func (a *Analytics) Run(ctx context.Context, b *broker.Broker, opt broker.ConsumeOptions) error {
	own := a.ConsumeOptions()
	opt.Prefetch, opt.Concurrency, opt.HandlerTimeout, opt.CoalesceAcks = own.Prefetch, own.Concurrency, own.HandlerTimeout, own.CoalesceAcks
	stop := make(chan struct{})
	flusherDone := make(chan struct{})
	go func() { defer close(flusherDone); a.flushLoop(ctx, stop) }()
	err := b.Consume(ctx, ConsumerName, opt, a.Handle)
	close(stop) // every handler has returned: nothing more arrives
	<-flusherDone
	return err
}

// RunFlusher runs only the batching side until stop is closed, for callers that feed
// Handle themselves (tests, replays).
func (a *Analytics) RunFlusher(ctx context.Context, stop <-chan struct{}) { a.flushLoop(ctx, stop) }

func (a *Analytics) flushLoop(ctx context.Context, stop <-chan struct{}) {
	var batch []pending
	var timer <-chan time.Time
	flush := func() {
		if len(batch) > 0 {
			a.flush(ctx, batch)
		}
		batch, timer = nil, nil
	}
	for {
		select {
		case p := <-a.in:
			batch = append(batch, p)
			switch {
			case len(batch) >= a.opt.MaxBatch:
				flush()
			case ctx.Err() != nil:
				// Shutting down: write what is in hand at once, no waiting.
				flush()
			case timer == nil:
				timer = time.After(a.opt.FlushInterval)
			}
		case <-timer:
			flush()
		case <-ctx.Done():
			flush()
			// Keep serving handlers that finish their messages during shutdown.
			select {
			case p := <-a.in:
				batch = append(batch, p)
				flush()
				continue
			case <-stop:
				flush()
				return
			}
		case <-stop:
			flush()
			return
		}
	}
}

func (a *Analytics) flush(ctx context.Context, batch []pending) {
	start := time.Now()
	var b Batch
	seen := map[string]bool{}
	var skus []string
	skuSeen := map[string]bool{}
	for _, p := range batch {
		if seen[p.env.ID] {
			continue // the same event twice in one batch (a redelivery while in hand)
		}
		seen[p.env.ID] = true
		b.Append(p.facts)
		for _, l := range p.facts.OrderLines {
			if !skuSeen[l.SKU] {
				skuSeen[l.SKU] = true
				skus = append(skus, l.SKU)
			}
		}
	}
	// Writes go on through shutdown: the events in hand are acked only after it.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.opt.WriteTimeout)
	defer cancel()
	if a.opt.Stock != nil && len(skus) > 0 {
		levels, err := a.opt.Stock(wctx, skus)
		if err != nil {
			// Observations are best effort: the facts are written without them.
			a.opt.Logger.WarnContext(ctx, "analytics: stock levels not read", "error", err)
		}
		at := a.now().UTC()
		for _, sku := range skus {
			if n, ok := levels[sku]; ok {
				b.Stock = append(b.Stock, Stock{EventID: uuid.Must(uuid.NewV7()).String(), SKU: sku, Available: int32(n), ObservedAt: at})
			}
		}
	}
	_, err := backoff.Retry(wctx, func() (struct{}, error) {
		err := a.sink.Write(wctx, b)
		if err != nil {
			a.opt.Logger.WarnContext(ctx, "analytics: batch write failed; retrying", "events", len(seen), "error", err)
		}
		return struct{}{}, err
	}, backoff.WithBackOff(backoff.NewExponentialBackOff()), backoff.WithMaxElapsedTime(a.opt.WriteTimeout))
	if err != nil {
		err = fmt.Errorf("analytics: write batch of %d events: %w", len(seen), err)
		a.opt.Logger.ErrorContext(ctx, "analytics: batch not written; its events go back to the broker", "events", len(seen), "error", err)
	} else {
		for id := range seen {
			a.flushed.Add(id, struct{}{})
		}
	}
	if a.opt.Observe != nil {
		a.opt.Observe(len(seen), b.Len(), time.Since(start), err)
	}
	for _, p := range batch {
		p.done <- err
	}
}
