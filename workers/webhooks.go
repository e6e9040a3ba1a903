package workers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/checkout-backend/checkout/internal/broker"
	"github.com/checkout-backend/checkout/internal/event"
	"github.com/checkout-backend/checkout/internal/store"
	"github.com/checkout-backend/checkout/internal/webhook"
)

// WebhookFanOutConsumer is the partner webhooks' consumer: it turns order events into
// delivery tasks. Deliveries themselves are not messages: the store schedules each
// attempt and the delivery loop (Webhooks.Run) claims what is due.
const WebhookFanOutConsumer = "webhook-fanout"

// WebhookConsumers are the partner webhooks' part of the topology: the fan-out takes
// order events one at a time (single active consumer, retried in place), so tasks are
// made in event order even through failures. Its queue is bound only to the types some
// endpoint wants (broker.Consumer.Demand, store.Webhooks.Demand): a shop without
// partner endpoints queues nothing for it.
func WebhookConsumers() []broker.Consumer {
	return []broker.Consumer{{Name: WebhookFanOutConsumer, Types: event.OrderTypes, SingleActive: true, InPlace: true, Remote: true, Demand: true}}
}

// FanOutBinder binds the fan-out's queue on b to event types at once: what a
// registration calls before it stores an endpoint (store.Webhooks.BindWith), so the
// queue takes the endpoint's types from the moment it exists.
func FanOutBinder(b *broker.Broker) func(ctx context.Context, types []string) error {
	return func(ctx context.Context, types []string) error { return b.Bind(ctx, WebhookFanOutConsumer, types) }
}

// WebhookOptions tune delivery.
type WebhookOptions struct {
	Policy webhook.Policy
	// Sealer opens the endpoints' sealed secrets to sign (nil: secrets are plain text).
	Sealer      *webhook.Sealer
	Delivery    store.DeliveryPolicy
	Timeout     time.Duration // per attempt (default 10s, the contract's)
	PerEndpoint int           // concurrent deliveries to one endpoint (default 4)
	Concurrency int           // deliveries in flight in this process (default 32)
	// Poll is how often due deliveries are looked for (default 250ms; a new task wakes
	// this process's loop at once).
	Poll   time.Duration
	Logger *slog.Logger
}

// DeliveryStore is what delivering partner webhooks needs of the store
// (store.Webhooks).
type DeliveryStore interface {
	Wanted(ctx context.Context, typ string) (bool, error)
	FanOut(ctx context.Context, consumer string, env event.Envelope, body []byte, orderID string, sequence int) error
	ClaimDue(ctx context.Context, now time.Time, n int, lease time.Duration) ([]store.Task, error)
	Release(ctx context.Context, taskID string) error
	RepairChains(ctx context.Context, now time.Time) (int64, error)
	RecordAttempt(ctx context.Context, t *store.Task, a store.Attempt, p store.DeliveryPolicy) (store.Outcome, time.Time, error)
	Settle(ctx context.Context, taskID, status string) error
}

// Webhooks delivers order events to partner endpoints.
type Webhooks struct {
	store  DeliveryStore
	client *http.Client
	now    func() time.Time
	opt    WebhookOptions

	mu    sync.Mutex
	slots map[string]chan struct{}
	wake  chan struct{}
}

// NewWebhooks returns the webhook consumers' handlers; now is the delivery loop's clock
// (what is due, attempt latencies, chain repairs). A nil clock panics (a programming
// error).
func NewWebhooks(s DeliveryStore, now func() time.Time, opt WebhookOptions) *Webhooks {
	mustClock("NewWebhooks", now)
	if opt.Timeout == 0 {
		opt.Timeout = 10 * time.Second
	}
	if opt.PerEndpoint == 0 {
		opt.PerEndpoint = 4
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.Delivery.Retry.MaxAge == 0 {
		opt.Delivery.Retry.MaxAge = 24 * time.Hour
	}
	if opt.Concurrency == 0 {
		opt.Concurrency = 32
	}
	if opt.Poll == 0 {
		opt.Poll = 250 * time.Millisecond
	}
	tr := &http.Transport{
		Proxy:               nil, // never through a proxy that could reach what the policy refuses
		DialContext:         opt.Policy.Dialer(5 * time.Second).DialContext,
		TLSHandshakeTimeout: 5 * time.Second,
		MaxIdleConnsPerHost: opt.PerEndpoint,
		IdleConnTimeout:     90 * time.Second,
	}
	client := &http.Client{Transport: tr, Timeout: opt.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &Webhooks{store: s, client: client, now: now, opt: opt, slots: map[string]chan struct{}{}, wake: make(chan struct{}, 1)}
}

// HandleOrderEvent makes the delivery tasks of an order event.
func (w *Webhooks) HandleOrderEvent(ctx context.Context, env event.Envelope) error {
	var p event.OrderPayload
	if err := json.Unmarshal(env.Payload, &p); err != nil {
		return broker.Permanent(err)
	}
	// An event no endpoint wants changes nothing: one read, no transaction.
	wanted, err := w.store.Wanted(ctx, env.Type)
	if err != nil || !wanted {
		return err
	}
	body, err := webhook.Body(env)
	if err != nil {
		return broker.Permanent(err)
	}
	if err := w.store.FanOut(ctx, WebhookFanOutConsumer, env, body, p.Order.ID, p.Order.Sequence); err != nil {
		return err
	}
	w.poke()
	return nil
}

func (w *Webhooks) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *Webhooks) slot(id string) chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	s, ok := w.slots[id]
	if !ok {
		s = make(chan struct{}, w.opt.PerEndpoint)
		w.slots[id] = s
	}
	return s
}

// deliverDue claims the deliveries due now and sends each, at most Concurrency at once
// and PerEndpoint per endpoint; a task whose endpoint is busy goes back untried (no
// attempt spent). It returns how many it sent.
func (w *Webhooks) deliverDue(ctx context.Context, inFlight chan struct{}, wg *sync.WaitGroup) (int, error) {
	free := cap(inFlight) - len(inFlight)
	if free == 0 {
		return 0, nil
	}
	tasks, err := w.store.ClaimDue(ctx, w.now(), free, 2*w.opt.Timeout+5*time.Second)
	if err != nil {
		return 0, err
	}
	sent := 0
	for i := range tasks {
		t := &tasks[i]
		slot := w.slot(t.WebhookID)
		select {
		case slot <- struct{}{}:
		default:
			w.store.Release(ctx, t.ID)
			continue
		}
		sent++
		inFlight <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-slot; <-inFlight; wg.Done() }()
			if err := w.Deliver(context.WithoutCancel(ctx), t); err != nil {
				w.opt.Logger.Warn("webhook delivery not recorded; the lease expires and it is tried again", "webhookId", t.WebhookID, "error", err)
			}
		}()
	}
	return sent, nil
}

// Deliver makes one attempt of a claimed task and records it.
func (w *Webhooks) Deliver(ctx context.Context, t *store.Task) error {
	if t.DeletedAt != nil {
		return w.store.Settle(ctx, t.ID, "CANCELLED")
	}
	if !t.Enabled {
		return w.store.Settle(ctx, t.ID, "PAUSED")
	}
	a := w.post(ctx, t)
	out, next, err := w.store.RecordAttempt(ctx, t, a, w.opt.Delivery)
	if err != nil {
		return err
	}
	switch out {
	case store.Delivered:
		w.poke() // the next of its chain is due
	case store.RetryLater:
		w.opt.Logger.InfoContext(ctx, "webhook delivery failed; retry scheduled", "webhookId", t.WebhookID, "eventId", t.EventID,
			"error", a.Err, "nextAttemptAt", next.UTC().Format(time.RFC3339))
	case store.Dead:
		w.opt.Logger.WarnContext(ctx, "webhook delivery given up", "webhookId", t.WebhookID, "eventId", t.EventID, "maxAge", w.opt.Delivery.Retry.MaxAge.String())
		w.poke()
	case store.Paused:
		w.opt.Logger.WarnContext(ctx, "webhook endpoint disabled", "webhookId", t.WebhookID)
	}
	return nil
}

func (w *Webhooks) post(ctx context.Context, t *store.Task) store.Attempt {
	start := w.now()
	a := store.Attempt{At: start}
	// The address is checked again now: a name can point elsewhere than at registration.
	if err := w.opt.Policy.ValidateURL(ctx, t.URL); err != nil {
		a.Err = err.Error()
		return a
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.URL, bytes.NewReader(t.Body))
	if err != nil {
		a.Err = "bad request: " + err.Error()
		return a
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "checkout-webhooks/1")
	req.Header.Set("Checkout-Event-Id", t.EventID)
	sig, err := w.opt.Sealer.Sign(t.WebhookID, t.Secret, start, t.Body)
	if err != nil {
		a.Err = "cannot open the endpoint's signing secret (WEBHOOK_SECRET_KEY)"
		return a
	}
	req.Header.Set("Checkout-Signature", sig)
	resp, err := w.client.Do(req)
	a.Latency = w.now().Sub(start)
	if err != nil {
		a.Err = "request failed: " + errors.Unwrap(err).Error()
		if errors.Unwrap(err) == nil {
			a.Err = "request failed: " + err.Error()
		}
		return a
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	a.StatusCode = resp.StatusCode
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		a.Err = fmt.Sprintf("HTTP %d", resp.StatusCode)
	}
	return a
}

// Run consumes the fan-out queue and delivers what is due until ctx ends. Several
// processes may run it: they share the due deliveries (SKIP LOCKED) and the fan-out
// queue (one active consumer). Chains whose head went missing are repaired every
// minute.
func (w *Webhooks) Run(ctx context.Context, b *broker.Broker, opt broker.ConsumeOptions) error {
	errc := make(chan error, 1)
	go func() {
		errc <- b.Consume(ctx, WebhookFanOutConsumer, broker.ConsumeOptions{Prefetch: 1, Concurrency: 1, Observe: opt.Observe,
			Retry: opt.Retry}, w.HandleOrderEvent)
	}()
	inFlight := make(chan struct{}, w.opt.Concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	poll := time.NewTicker(w.opt.Poll)
	defer poll.Stop()
	repair := time.NewTicker(time.Minute)
	defer repair.Stop()
	for {
		n, err := w.deliverDue(ctx, inFlight, &wg)
		if err != nil && ctx.Err() == nil {
			w.opt.Logger.Warn("claiming webhook deliveries failed", "error", err)
		}
		if n > 0 && err == nil {
			continue // more may be due
		}
		select {
		case <-ctx.Done():
			return <-errc
		case <-w.wake:
		case <-poll.C:
		case <-repair.C:
			// An endpoint deleted, or a connection that bound every type while a
			// registration was under way: the fan-out's bindings follow what is wanted.
			if _, err := b.Route(ctx); err != nil && ctx.Err() == nil {
				w.opt.Logger.Warn("binding the webhook fan-out to the wanted events failed", "error", err)
			}
			if n, err := w.store.RepairChains(ctx, w.now()); err != nil && ctx.Err() == nil {
				w.opt.Logger.Warn("repairing webhook chains failed", "error", err)
			} else if n > 0 {
				w.opt.Logger.Warn("webhook chains without a head repaired", "chains", n)
			}
		}
	}
}
