package workers_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/checkout-backend/checkout/internal/broker"
	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/event"
	"github.com/checkout-backend/checkout/internal/platform/metrics"
	"github.com/checkout-backend/checkout/internal/store"
	"github.com/checkout-backend/checkout/internal/testutil"
	"github.com/checkout-backend/checkout/internal/webhook"
	"github.com/checkout-backend/checkout/outbox"
	"github.com/checkout-backend/checkout/workers"
)

// fakeClock is a clock the test moves.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock(t time.Time) *fakeClock { c := &fakeClock{}; c.ns.Store(t.UnixNano()); return c }
func (c *fakeClock) Now() time.Time       { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Set(t time.Time)      { c.ns.Store(t.UnixNano()) }

// orderedReceiver records deliveries; it fails every delivery of failType while down.
type orderedReceiver struct {
	mu       sync.Mutex
	down     bool
	failType string
	attempts map[string]int // by event type
	ok       []received
}

func (r *orderedReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	var ev received
	json.Unmarshal(body, &ev)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.attempts[ev.Type]++
	if r.down && ev.Type == r.failType {
		w.WriteHeader(503)
		return
	}
	r.ok = append(r.ok, ev)
	w.WriteHeader(204)
}

func (r *orderedReceiver) delivered() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.ok...)
}

func TestWebhookDelivery_FailsLongerThanEveryRetry_DeadExactlyAtMaxAge_NextDeliveredAfter(t *testing.T) {
	t.Parallel()
	clock := newFakeClock(time.Now())
	const maxAge = time.Hour
	s := testutil.NewStack(t, testutil.StackOptions{Webhooks: true, Now: clock.Now,
		WebhookDelivery: store.DeliveryPolicy{Retry: webhook.Retry{Base: time.Minute, MaxAge: maxAge}, DisableAfter: 1000}})
	s.Product(t, "DA", 100, map[string]int{"w": 10})
	rcv := &orderedReceiver{down: true, failType: event.OrderPlaced, attempts: map[string]int{}}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	if _, _, err := newService(s, true).Register(context.Background(), admin, srv.URL, []string{"*"}); err != nil {
		t.Fatal(err)
	}
	id := s.Checkout(t, "alice", "k", "tok_visa", line("DA", 1))
	s.WaitStatus(t, id, checkout.StatusPaid, 10*time.Second)

	var created time.Time
	// The fan-out to partners runs beside the payment, so a task may not exist yet when
	// the order is PAID: that reads as no attempt (status "").
	taskOf := func(typ string) (status string, attempts int, next *time.Time) {
		err := s.DB.NewRaw("SELECT status, attempts, next_attempt_at, created_at FROM webhook_tasks WHERE event_type = ?", typ).
			Scan(context.Background(), &status, &attempts, &next, &created)
		if errors.Is(err, sql.ErrNoRows) {
			return "", 0, nil
		}
		if err != nil {
			t.Fatal(err)
		}
		return
	}
	// Each failure schedules the next attempt; the clock jumps to it; until the store
	// says the delivery is dead.
	for i := 0; ; i++ {
		if i > 40 {
			t.Fatal("never dead")
		}
		var status string
		var attempts int
		var next *time.Time
		testutil.Eventually(t, 10*time.Second, "an attempt recorded", func() bool {
			status, attempts, next = taskOf(event.OrderPlaced)
			return attempts == i+1 || status == "DEAD"
		})
		if status == "DEAD" {
			break
		}
		if next == nil || next.After(created.Add(maxAge)) {
			t.Fatalf("attempt %d scheduled at %v, past the max age (%s after %s)", attempts+1, next, maxAge, created)
		}
		clock.Set(*next)
	}
	var lastAt time.Time
	if err := s.DB.NewRaw("SELECT max(delivered_at) FROM webhook_deliveries WHERE event_type = ?", event.OrderPlaced).Scan(context.Background(), &lastAt); err != nil {
		t.Fatal(err)
	}
	if !lastAt.Equal(created.Add(maxAge)) {
		t.Fatalf("the last attempt was %s after the event, want exactly %s (WEBHOOK_MAX_AGE)", lastAt.Sub(created), maxAge)
	}
	// The chain goes on: order.paid, queued behind the dead head, is delivered.
	testutil.Eventually(t, 10*time.Second, "order.paid delivered after the dead order.placed", func() bool {
		d := rcv.delivered()
		return len(d) == 1 && d[0].Type == event.OrderPaid
	})
	testutil.Eventually(t, 10*time.Second, "the order.paid task recorded delivered", func() bool {
		status, _, _ := taskOf(event.OrderPaid)
		return status == "DELIVERED"
	})
}

// flakyFanOut fails the first fan-out of one event type.
type flakyFanOut struct {
	workers.DeliveryStore
	failType string
	failed   atomic.Bool
	calls    atomic.Int32
}

func (f *flakyFanOut) FanOut(ctx context.Context, consumer string, env event.Envelope, body []byte, orderID string, sequence int) error {
	f.calls.Add(1)
	if env.Type == f.failType && !f.failed.Swap(true) {
		return errors.New("database away for a moment")
	}
	return f.DeliveryStore.FanOut(ctx, consumer, env, body, orderID, sequence)
}

func TestWebhookFanOut_FailsOnceForEvent1_Event2StillAfterIt(t *testing.T) {
	t.Parallel()
	s := testutil.NewStack(t, testutil.StackOptions{})
	s.Product(t, "FO", 100, map[string]int{"w": 10})
	topo := testutil.NewTopology(workers.WebhookConsumers()...)
	b := testutil.NewBroker(t, testutil.AMQPURL(), topo)
	rcv := &orderedReceiver{attempts: map[string]int{}}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	if _, _, err := newService(s, true).Register(context.Background(), admin, srv.URL, []string{"*"}); err != nil {
		t.Fatal(err)
	}
	flaky := &flakyFanOut{DeliveryStore: s.WebhookStore, failType: event.OrderPlaced}
	wh := workers.NewWebhooks(flaky, time.Now, workers.WebhookOptions{Policy: webhook.Policy{AllowPrivate: true}, Timeout: 2 * time.Second, Poll: 20 * time.Millisecond,
		Delivery: store.DeliveryPolicy{Retry: webhook.Retry{Base: 50 * time.Millisecond, MaxAge: time.Minute}}, Logger: testLogger()})
	// Were a failed event scheduled for later (as the saga's consumers do), the next
	// event would overtake it: the retry here is published again at once.
	retry := func(ctx context.Context, consumer string, e event.Envelope, attempt int, _ time.Duration) error {
		e.Destination = consumer
		return b.Publish(ctx, []event.Envelope{e})
	}
	s.Go(func(ctx context.Context) error { return wh.Run(ctx, b, broker.ConsumeOptions{Retry: retry}) })
	// Both events of the order reach the fan-out back to back.
	placed, _ := event.New(event.OrderPlaced, "o-1", time.Now(), event.OrderPayload{Order: event.OrderData{ID: "o-1", Status: "PENDING_PAYMENT", Sequence: 1}})
	paid, _ := event.New(event.OrderPaid, "o-1", time.Now(), event.OrderPayload{Order: event.OrderData{ID: "o-1", Status: "PAID", Sequence: 2}})
	if err := b.Publish(context.Background(), []event.Envelope{placed, paid}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 15*time.Second, "both events delivered", func() bool { return len(rcv.delivered()) == 2 })
	d := rcv.delivered()
	if d[0].Type != event.OrderPlaced || d[1].Type != event.OrderPaid {
		t.Fatalf("delivered %s then %s, want order.placed then order.paid", d[0].Type, d[1].Type)
	}
	if !flaky.failed.Load() || flaky.calls.Load() != 3 {
		t.Fatalf("fan-out called %d times (failed: %v), want 3: placed, placed again, paid", flaky.calls.Load(), flaky.failed.Load())
	}
}

// brokenOrders cannot move one order.
type brokenOrders struct {
	checkout.OrderStore
	bad string
}

func (b brokenOrders) Transition(ctx context.Context, id string, decide func(o *checkout.Order) (checkout.Change, error)) (checkout.Order, error) {
	if id == b.bad {
		return checkout.Order{}, errors.New("row damaged")
	}
	return b.OrderStore.Transition(ctx, id, decide)
}

func TestSweeper_AnOrderItCannotMove_TheRestStillExpire(t *testing.T) {
	t.Parallel()
	s := testutil.NewStack(t, testutil.StackOptions{NoWorkers: true, NoSweeper: true, TTL: time.Millisecond})
	s.Product(t, "SW", 100, map[string]int{"w": 10})
	var ids []string
	for i := 0; i < 5; i++ {
		ids = append(ids, s.Checkout(t, "c", "k"+string(rune('a'+i)), "tok_visa", line("SW", 1)))
	}
	var failures []string
	anHourOn := func() time.Time { return time.Now().Add(time.Hour) }
	sw := workers.NewSweeper(brokenOrders{OrderStore: s.Orders, bad: ids[0]}, nil, anHourOn, workers.SweeperOptions{Logger: testLogger(),
		OnFailure: func(id string, _ error) { failures = append(failures, id) }})
	n, err := sw.SweepOnce(context.Background())
	if err != nil || n != 4 {
		t.Fatalf("expired %d (%v), want the 4 others", n, err)
	}
	if len(failures) != 1 || failures[0] != ids[0] {
		t.Fatalf("failures counted %v, want %s", failures, ids[0])
	}
	for _, id := range ids[1:] {
		if o, _ := s.Orders.Order(context.Background(), id); o.Status != checkout.StatusExpired {
			t.Fatalf("order %s is %s", id, o.Status)
		}
	}
}

func TestRelayKilledAfterConfirm_OrdersCountedOncePerOrder(t *testing.T) {
	t.Parallel()
	m := metrics.New(metrics.Options{})
	var crashes atomic.Int32
	s := testutil.NewStack(t, testutil.StackOptions{OnCommit: m.OrderCommitted, Relay: outbox.RelayOptions{AfterConfirm: func() error {
		// The first three batches are confirmed, then the relay "dies" before marking
		// them: they are published again.
		if crashes.Add(1) <= 3 {
			return errors.New("killed after confirm")
		}
		return nil
	}}})
	s.Product(t, "RK", 100, map[string]int{"w": 10})
	var ids []string
	for i := 0; i < 5; i++ {
		ids = append(ids, s.Checkout(t, "c", "key-"+string(rune('a'+i)), "tok_visa", line("RK", 1)))
	}
	for _, id := range ids {
		s.WaitStatus(t, id, checkout.StatusPaid, 15*time.Second)
	}
	// Every event published (the crashed batches twice) before counting.
	testutil.Eventually(t, 15*time.Second, "the outbox drained", func() bool {
		n, _, _ := outbox.Backlog(context.Background(), s.DB, time.Now())
		return n == 0
	})
	if crashes.Load() < 3 {
		t.Fatal("the relay never crashed after a confirm")
	}
	for status, want := range map[string]float64{"PENDING_PAYMENT": 5, "PAID": 5} {
		if got := testutil.CounterValue(t, m.Registry(), "checkout_orders_total", "status", status); got != want {
			t.Fatalf("checkout_orders_total{status=%q} = %v, want %v (one per order, whatever was published twice)", status, got, want)
		}
	}
}
