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

// Partner webhook consumers.
const (
	WebhookFanOutConsumer  = "webhook-fanout"
	WebhookDeliverConsumer = "webhook-deliver"
)

// WebhookConsumers are the partner webhooks' part of the topology: the fan-out takes
// order events one at a time (single active consumer, so tasks are made in event
// order); deliveries retry from base, doubling with jitter, past maxAge.
func WebhookConsumers(base, maxAge time.Duration) []broker.Consumer {
	return []broker.Consumer{
		{Name: WebhookFanOutConsumer, Types: event.OrderTypes, SingleActive: true},
		{Name: WebhookDeliverConsumer, Types: []string{event.WebhookDeliver}, RetryDelays: WebhookDelays(base, maxAge), Jitter: true},
	}
}

// WebhookDelays doubles from base, each wait capped at 6 hours, until the waits add up
// to more than maxAge.
func WebhookDelays(base, maxAge time.Duration) []time.Duration {
	if base <= 0 {
		base = 10 * time.Second
	}
	var out []time.Duration
	var total time.Duration
	for d := base; total <= maxAge+base; d *= 2 {
		d = min(d, 6*time.Hour)
		out = append(out, d)
		total += d
	}
	return out
}

// WebhookOptions tune delivery.
type WebhookOptions struct {
	Policy webhook.Policy
	// Sealer opens the endpoints' sealed secrets to sign (nil: secrets are plain text).
	Sealer      *webhook.Sealer
	Delivery    store.DeliveryPolicy
	Timeout     time.Duration // per attempt (default 10s, the contract's)
	PerEndpoint int           // concurrent deliveries to one endpoint (default 4)
	Logger      *slog.Logger
	Now         func() time.Time
}

// Webhooks delivers order events to partner endpoints.
type Webhooks struct {
	store  *store.Webhooks
	client *http.Client
	opt    WebhookOptions

	mu    sync.Mutex
	slots map[string]chan struct{}
}

// NewWebhooks returns the webhook consumers' handlers.
func NewWebhooks(s *store.Webhooks, opt WebhookOptions) *Webhooks {
	if opt.Timeout == 0 {
		opt.Timeout = 10 * time.Second
	}
	if opt.PerEndpoint == 0 {
		opt.PerEndpoint = 4
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Delivery.MaxAge == 0 {
		opt.Delivery.MaxAge = 24 * time.Hour
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
	return &Webhooks{store: s, client: client, opt: opt, slots: map[string]chan struct{}{}}
}

// HandleOrderEvent makes the delivery tasks of an order event.
func (w *Webhooks) HandleOrderEvent(ctx context.Context, env event.Envelope) error {
	var p event.OrderPayload
	if err := json.Unmarshal(env.Payload, &p); err != nil {
		return broker.Permanent(err)
	}
	body, err := webhook.Body(env)
	if err != nil {
		return broker.Permanent(err)
	}
	return w.store.FanOut(ctx, WebhookFanOutConsumer, env, body, p.Order.ID, p.Order.Sequence)
}

var errEndpointBusy = errors.New("endpoint has its maximum of deliveries in flight")

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

// HandleDeliver makes one delivery attempt of a task.
func (w *Webhooks) HandleDeliver(ctx context.Context, env event.Envelope) error {
	var p event.DeliverPayload
	if err := json.Unmarshal(env.Payload, &p); err != nil {
		return broker.Permanent(err)
	}
	t, err := w.store.Task(ctx, p.TaskID)
	if err != nil {
		return err
	}
	if t == nil || t.Status != "PENDING" {
		return nil
	}
	if t.DeletedAt != nil {
		return w.store.Settle(ctx, t.ID, "CANCELLED")
	}
	if !t.Enabled {
		return w.store.Settle(ctx, t.ID, "PAUSED")
	}
	// A slow endpoint holds at most PerEndpoint workers; the others serve other partners.
	slot := w.slot(t.WebhookID)
	select {
	case slot <- struct{}{}:
		defer func() { <-slot }()
	case <-time.After(time.Second):
		return errEndpointBusy
	}
	a := w.post(ctx, t)
	out, err := w.store.RecordAttempt(ctx, t, a, w.opt.Delivery)
	if err != nil {
		return err
	}
	switch out {
	case store.RetryLater:
		return fmt.Errorf("webhook %s: %s", t.WebhookID, a.Err)
	case store.Dead:
		w.opt.Logger.WarnContext(ctx, "webhook delivery given up", "webhookId", t.WebhookID, "eventId", t.EventID)
		return broker.Permanent(fmt.Errorf("webhook %s: event %s undeliverable for %s", t.WebhookID, t.EventID, w.opt.Delivery.MaxAge))
	case store.Paused:
		w.opt.Logger.WarnContext(ctx, "webhook endpoint disabled", "webhookId", t.WebhookID)
	}
	return nil
}

func (w *Webhooks) post(ctx context.Context, t *store.Task) store.Attempt {
	start := w.opt.Now()
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
	a.Latency = w.opt.Now().Sub(start)
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

// Run consumes the webhook queues until ctx ends.
func (w *Webhooks) Run(ctx context.Context, b *broker.Broker, opt broker.ConsumeOptions) error {
	errc := make(chan error, 2)
	go func() {
		errc <- b.Consume(ctx, WebhookFanOutConsumer, broker.ConsumeOptions{Prefetch: 1, Concurrency: 1, Observe: opt.Observe}, w.HandleOrderEvent)
	}()
	go func() { errc <- b.Consume(ctx, WebhookDeliverConsumer, opt, w.HandleDeliver) }()
	return errors.Join(<-errc, <-errc)
}
