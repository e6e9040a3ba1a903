// Package feed fans order status events out to this instance's GraphQL subscribers. Each
// API instance follows the events exchange through a queue of its own, so any instance
// delivers any order's updates; a subscriber has a bounded buffer, and one that falls
// behind is dropped with ErrSlowSubscriber instead of stalling the others.
package feed

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"

	"github.com/checkout-backend/checkout/internal/broker"
	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/event"
)

// ErrSlowSubscriber ends a subscription whose reader fell behind.
var ErrSlowSubscriber = errors.New("subscriber too slow: updates were dropped; subscribe again to get the current status")

// Loader reads orders, to catch up after a reconnection.
type Loader interface {
	Orders(ctx context.Context, ids []string) (map[string]checkout.Order, error)
}

// Feed is the per-instance status feed.
type Feed struct {
	broker *broker.Broker
	loader Loader
	buffer int
	logger *slog.Logger

	mu    sync.Mutex
	subs  map[string]map[*sub]struct{}
	ready bool
}

// Ready reports whether the feed's queue is bound and consuming.
func (f *Feed) Ready() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ready
}

type sub struct {
	ch  chan checkout.Order
	err error
}

// New returns a feed following b; buffer bounds each subscriber's backlog.
func New(b *broker.Broker, loader Loader, buffer int, logger *slog.Logger) *Feed {
	if buffer <= 0 {
		buffer = 16
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &Feed{broker: b, loader: loader, buffer: buffer, logger: logger, subs: map[string]map[*sub]struct{}{}}
}

// Run follows the events until ctx ends.
func (f *Feed) Run(ctx context.Context) error {
	deliver := broker.TraceHandler("status-feed", func(_ context.Context, env event.Envelope) error {
		f.dispatch(env)
		return nil
	})
	return f.broker.Follow(ctx, event.StatusChangeTypes, f.resync, func(env event.Envelope) { deliver(ctx, env) })
}

// Subscribers is the number of live subscriptions.
func (f *Feed) Subscribers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, s := range f.subs {
		n += len(s)
	}
	return n
}

// Subscribe follows one order until ctx ends. The channel closes then, or when the
// subscriber falls behind; reason tells which (nil when ctx ended).
func (f *Feed) Subscribe(ctx context.Context, orderID string) (<-chan checkout.Order, func() error, error) {
	s := &sub{ch: make(chan checkout.Order, f.buffer)}
	f.mu.Lock()
	if f.subs[orderID] == nil {
		f.subs[orderID] = map[*sub]struct{}{}
	}
	f.subs[orderID][s] = struct{}{}
	f.mu.Unlock()
	go func() {
		<-ctx.Done()
		f.remove(orderID, s, nil)
	}()
	return s.ch, func() error {
		f.mu.Lock()
		defer f.mu.Unlock()
		return s.err
	}, nil
}

// remove drops s (closing its channel) if still subscribed; f.mu must not be held.
func (f *Feed) remove(orderID string, s *sub, reason error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removeLocked(orderID, s, reason)
}

func (f *Feed) removeLocked(orderID string, s *sub, reason error) {
	set := f.subs[orderID]
	if _, ok := set[s]; !ok {
		return
	}
	delete(set, s)
	if len(set) == 0 {
		delete(f.subs, orderID)
	}
	s.err = reason
	close(s.ch)
}

func (f *Feed) dispatch(env event.Envelope) {
	var p event.OrderPayload
	if err := json.Unmarshal(env.Payload, &p); err != nil || p.Order.ID == "" {
		return
	}
	d := p.Order
	o := checkout.Order{ID: d.ID, CustomerID: p.CustomerID, Status: checkout.Status(d.Status), Sequence: d.Sequence,
		TotalCents: d.TotalCents, Currency: d.Currency, UpdatedAt: d.UpdatedAt,
		TrackingNumber: d.TrackingNumber, PaymentFailureReason: d.PaymentFailureReason}
	f.deliver(o)
}

// deliver hands o to its subscribers without ever blocking: a full buffer drops that
// subscriber.
func (f *Feed) deliver(o checkout.Order) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for s := range f.subs[o.ID] {
		select {
		case s.ch <- o:
		default:
			f.logger.Warn("subscriber too slow; dropped", "orderId", o.ID)
			f.removeLocked(o.ID, s, ErrSlowSubscriber)
		}
	}
}

// resync sends every followed order's current state after a (re)connection, so no
// change made while the feed was away is missed (subscribers drop what they had).
func (f *Feed) resync(ctx context.Context) {
	f.mu.Lock()
	f.ready = true
	ids := make([]string, 0, len(f.subs))
	for id := range f.subs {
		ids = append(ids, id)
	}
	f.mu.Unlock()
	if len(ids) == 0 || f.loader == nil {
		return
	}
	orders, err := f.loader.Orders(ctx, ids)
	if err != nil {
		f.logger.Warn("feed resync failed", "error", err)
		return
	}
	for _, o := range orders {
		f.deliver(o)
	}
}
