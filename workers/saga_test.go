package workers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/checkout-backend/checkout/internal/broker"
	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/event"
	"github.com/checkout-backend/checkout/internal/payment"
	"github.com/checkout-backend/checkout/internal/payment/sandbox"
	"github.com/checkout-backend/checkout/internal/store"
	"github.com/checkout-backend/checkout/internal/testutil"
	"github.com/checkout-backend/checkout/outbox"
	"github.com/checkout-backend/checkout/workers"
)

func line(sku string, q int) checkout.Line { return checkout.Line{SKU: sku, Quantity: q} }

func TestSaga_EndToEnd_PaidOrFailed(t *testing.T) {
	t.Parallel()
	s := testutil.NewStack(t, testutil.StackOptions{})
	s.Product(t, "E2E", 1200, map[string]int{"w": 10})
	tok := testutil.Token(t, "alice")
	place := func(key, payToken string) string {
		resp := s.Do(t, tok, `mutation($in: CheckoutInput!) { checkout(input: $in) { order { id status } userErrors { code } } }`,
			map[string]any{"in": map[string]any{"idempotencyKey": key, "paymentToken": payToken, "items": []any{map[string]any{"sku": "E2E", "quantity": 3}}}})
		var r struct {
			Checkout struct {
				Order struct{ ID, Status string }
			}
		}
		json.Unmarshal(resp.Data, &r)
		if r.Checkout.Order.ID == "" {
			t.Fatalf("checkout failed: %s %+v", resp.Data, resp.Errors)
		}
		return r.Checkout.Order.ID
	}

	paid := place("visa", "tok_visa")
	s.WaitStatus(t, paid, checkout.StatusPaid, 10*time.Second)
	if onHand, reserved := s.Stock(t, "E2E"); onHand != 7 || reserved != 0 {
		t.Fatalf("after PAID on hand %d reserved %d, want 7/0 (sold)", onHand, reserved)
	}
	pay, err := s.Payments.Payment(context.Background(), paid)
	if err != nil || pay == nil || pay.Status != "succeeded" || pay.ProviderPaymentID == nil || pay.AmountCents != 3600 {
		t.Fatalf("payment record: %+v %v", pay, err)
	}

	failed := place("declined", "tok_chargeDeclined")
	o := s.WaitStatus(t, failed, checkout.StatusPaymentFailed, 10*time.Second)
	if o.PaymentFailureReason == nil || *o.PaymentFailureReason != "card_declined" {
		t.Fatalf("failure reason %v", o.PaymentFailureReason)
	}
	if onHand, reserved := s.Stock(t, "E2E"); onHand != 7 || reserved != 0 {
		t.Fatalf("after PAYMENT_FAILED on hand %d reserved %d, want 7/0 (released)", onHand, reserved)
	}
	if s.Sandbox.ChargeCount() != 2 {
		t.Fatalf("%d charges, want 2", s.Sandbox.ChargeCount())
	}
	// The token is gone from the order once the payment has an outcome.
	if n := s.Count(t, "SELECT count(*) FROM orders WHERE payment_token IS NOT NULL"); n != 0 {
		t.Fatalf("%d orders still hold a payment token", n)
	}
	// Every status change was published: placed, paid, placed, payment_failed.
	testutil.Eventually(t, 10*time.Second, "4 events published", func() bool {
		return s.Count(t, "SELECT count(*) FROM outbox WHERE published_at IS NOT NULL") == 4
	})
}

func TestSaga_CancelPaidOrder_RefundsAndRestocks(t *testing.T) {
	t.Parallel()
	s := testutil.NewStack(t, testutil.StackOptions{})
	s.Product(t, "RF", 500, map[string]int{"w": 5})
	id := s.Checkout(t, "alice", "k", "tok_visa", line("RF", 2))
	s.WaitStatus(t, id, checkout.StatusPaid, 10*time.Second)
	if _, err := s.Service.CancelOrder(context.Background(), checkout.Actor{CustomerID: "alice"}, id); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the refund of the cancelled order", func() bool { return s.Sandbox.RefundCount() > 0 })
	if s.Sandbox.RefundCount() != 1 {
		t.Fatalf("%d refunds, want 1", s.Sandbox.RefundCount())
	}
	if onHand, reserved := s.Stock(t, "RF"); onHand != 5 || reserved != 0 {
		t.Fatalf("after cancel of a paid order on hand %d reserved %d, want 5/0", onHand, reserved)
	}
	waitPayment(t, s, id, "refunded")
	// Shipping it now is an invalid transition.
	if _, err := s.Service.ShipOrder(context.Background(), checkout.Actor{CustomerID: "ops", Admin: true}, id, "TRK"); checkout.ErrorCode(err) != checkout.InvalidTransition {
		t.Fatalf("ship a cancelled order: %v", err)
	}
}

func TestSaga_ShipPaidOrder(t *testing.T) {
	t.Parallel()
	s := testutil.NewStack(t, testutil.StackOptions{})
	s.Product(t, "SH", 500, map[string]int{"w": 5})
	id := s.Checkout(t, "alice", "k", "pm_card_visa", line("SH", 1))
	s.WaitStatus(t, id, checkout.StatusPaid, 10*time.Second)
	o, err := s.Service.ShipOrder(context.Background(), checkout.Actor{CustomerID: "ops", Admin: true}, id, "1Z999")
	if err != nil || o.Status != checkout.StatusShipped || *o.TrackingNumber != "1Z999" {
		t.Fatalf("ship: %+v %v", o, err)
	}
	if _, err := s.Service.CancelOrder(context.Background(), checkout.Actor{CustomerID: "alice"}, id); checkout.ErrorCode(err) != checkout.OrderNotCancellable {
		t.Fatalf("cancel a shipped order: %v", err)
	}
}

// waitPayment waits until the order's payment has status.
func waitPayment(t *testing.T, s *testutil.Stack, orderID, status string) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, "the payment of "+orderID+" to be "+status, func() bool {
		p, err := s.Payments.Payment(context.Background(), orderID)
		if err != nil {
			t.Fatal(err)
		}
		return p != nil && p.Status == status
	})
}

func TestSaga_BrokerDown_CheckoutsContinue_EverythingDeliveredAfter(t *testing.T) {
	t.Parallel()
	proxy := testutil.NewProxy(t, testutil.AMQPHostPort(t))
	s := testutil.NewStack(t, testutil.StackOptions{AMQPURL: "amqp://guest:guest@" + proxy.Addr() + "/"})
	s.Product(t, "BD", 100, map[string]int{"w": 100})
	// Warm up: the broker path works.
	first := s.Checkout(t, "c", "warm", "tok_visa", line("BD", 1))
	s.WaitStatus(t, first, checkout.StatusPaid, 10*time.Second)
	testutil.Eventually(t, 10*time.Second, "the warm-up's events published", func() bool {
		n, _, _ := outbox.Backlog(context.Background(), s.DB, time.Now())
		return n == 0
	})

	proxy.Cut()
	var ids []string
	for i := 0; i < 20; i++ {
		ids = append(ids, s.Checkout(t, fmt.Sprint("c", i), "k", "tok_visa", line("BD", 1)))
	}
	// The relay tried every one of them and failed: they wait in the outbox, none lost.
	testutil.Eventually(t, 30*time.Second, "the relay to fail to publish all 20 while the broker is cut", func() bool {
		return s.Count(t, "SELECT count(*) FROM outbox WHERE published_at IS NULL AND last_error IS NOT NULL") == 20
	})
	if n, _, err := outbox.Backlog(context.Background(), s.DB, time.Now()); err != nil || n != 20 {
		t.Fatalf("outbox backlog %d (%v) while the broker is cut, want 20", n, err)
	}
	proxy.Restore()
	for _, id := range ids {
		s.WaitStatus(t, id, checkout.StatusPaid, 30*time.Second)
	}
	if got := s.Sandbox.ChargeCount(); got != 21 {
		t.Fatalf("%d charges, want 21 (one per order)", got)
	}
	testutil.Eventually(t, 10*time.Second, "the outbox drained after recovery", func() bool {
		n, _, _ := outbox.Backlog(context.Background(), s.DB, time.Now())
		return n == 0
	})
}

// rendezvousGateway holds each charge until want charges are in the provider call at
// once: copies of one event are then certainly handled side by side, past every check the
// worker makes before charging, so only the inbox can tell them apart.
type rendezvousGateway struct {
	payment.Gateway
	want    int
	mu      sync.Mutex
	keys    []string
	arrived chan struct{} // closed when want charges are in
	stop    chan struct{} // closed at cleanup: a failing test never leaves a charge hanging
}

func (g *rendezvousGateway) Charge(ctx context.Context, r payment.ChargeRequest) (payment.Charge, error) {
	g.mu.Lock()
	g.keys = append(g.keys, r.IdempotencyKey)
	if len(g.keys) == g.want {
		close(g.arrived)
	}
	g.mu.Unlock()
	select {
	case <-g.arrived:
	case <-g.stop:
	case <-ctx.Done():
		return payment.Charge{}, ctx.Err()
	}
	return g.Gateway.Charge(ctx, r)
}

func (g *rendezvousGateway) chargeKeys() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.keys...)
}

// settleCounter counts, per event id, the Settle calls that applied a report and those
// the inbox turned away (processed false).
type settleCounter struct {
	checkout.PaymentStore
	mu       sync.Mutex
	applied  map[string]int
	absorbed map[string]int
}

func (c *settleCounter) Settle(ctx context.Context, consumer, eventID string, rep checkout.PaymentReport) (checkout.Order, bool, error) {
	o, processed, err := c.PaymentStore.Settle(ctx, consumer, eventID, rep)
	if err == nil {
		c.mu.Lock()
		if processed {
			c.applied[eventID]++
		} else {
			c.absorbed[eventID]++
		}
		c.mu.Unlock()
	}
	return o, processed, err
}

func TestSaga_RelayCrashAfterConfirm_DuplicatesAbsorbed(t *testing.T) {
	t.Parallel()
	var batches atomic.Int32
	s := testutil.NewStack(t, testutil.StackOptions{NoWorkers: true, Relay: outbox.RelayOptions{AfterConfirm: func() error {
		// The first two batches reach the broker but are never marked published: the
		// relay publishes order.placed three times.
		if batches.Add(1) <= 2 {
			return fmt.Errorf("relay killed after confirm")
		}
		return nil
	}}})
	s.Product(t, "RC", 100, map[string]int{"w": 10})
	sb := sandbox.New()
	gw := &rendezvousGateway{Gateway: sb, want: 2, arrived: make(chan struct{}), stop: make(chan struct{})}
	t.Cleanup(func() { close(gw.stop) })
	payments := &settleCounter{PaymentStore: s.Payments, applied: map[string]int{}, absorbed: map[string]int{}}
	w, err := workers.NewPaymentWorker(payments, gw, testLogger(), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	// The payment consumer, counting the copies of each event it is handed.
	var mu sync.Mutex
	delivered := map[string]int{}
	var inFlight atomic.Int32
	sub := broker.New(testutil.AMQPURL(), s.Topology, nil)
	s.Go(func(ctx context.Context) error {
		defer sub.Close()
		return sub.Consume(ctx, workers.PaymentConsumer, broker.ConsumeOptions{Prefetch: 16, Concurrency: 8}, func(ctx context.Context, env event.Envelope) error {
			inFlight.Add(1)
			defer inFlight.Add(-1)
			mu.Lock()
			delivered[env.ID]++
			mu.Unlock()
			return w.HandleOrderPlaced(ctx, env)
		})
	})

	id := s.Checkout(t, "c", "k", "tok_visa", line("RC", 1))
	s.WaitStatus(t, id, checkout.StatusPaid, 20*time.Second)
	var placed string
	if err := s.DB.NewRaw("SELECT event_id::text FROM outbox WHERE type = 'order.placed' AND aggregate_id = ?", id).Scan(context.Background(), &placed); err != nil {
		t.Fatal(err)
	}
	// All three copies handed to the payment consumer and handled.
	testutil.Eventually(t, 20*time.Second, "three copies of order.placed handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return delivered[placed] == 3 && inFlight.Load() == 0
	})

	// The duplicates reached the charge: two copies were in the provider call together,
	// with the one idempotency key, and the provider charged once.
	keys := gw.chargeKeys()
	if len(keys) < 2 {
		t.Fatalf("%d charge calls: the duplicates never reached the provider", len(keys))
	}
	for _, k := range keys {
		if k != workers.ChargeKey(id) {
			t.Fatalf("charge keys %v, want every one %s", keys, workers.ChargeKey(id))
		}
	}
	if got := sb.ChargeCount(); got != 1 {
		t.Fatalf("%d charges for one order, want 1", got)
	}
	// And the inbox absorbed them: one report applied, every other copy turned away.
	payments.mu.Lock()
	applied, absorbed := payments.applied[placed], payments.absorbed[placed]
	payments.mu.Unlock()
	if applied != 1 || absorbed != len(keys)-1 {
		t.Fatalf("event %s: %d reports applied, %d absorbed by the inbox; want 1 applied and %d absorbed", placed, applied, absorbed, len(keys)-1)
	}
	if n := s.Count(t, "SELECT count(*) FROM inbox WHERE consumer = 'payment' AND event_id = ?", placed); n != 1 {
		t.Fatalf("inbox rows %d, want 1", n)
	}
	if n := s.Count(t, "SELECT count(*) FROM outbox WHERE type = 'order.paid'"); n != 1 {
		t.Fatalf("order.paid events %d, want 1", n)
	}
}

// holdFirstGateway holds the first charge until released, and tells when that charge
// has reached the provider; it records every call's idempotency key.
type holdFirstGateway struct {
	payment.Gateway
	once      sync.Once
	started   chan struct{} // the first charge is in the call
	release   chan struct{}
	firstDone chan struct{} // the first charge reached the provider and returned
	mu        sync.Mutex
	keys      []string
}

func (g *holdFirstGateway) Charge(ctx context.Context, r payment.ChargeRequest) (payment.Charge, error) {
	g.mu.Lock()
	g.keys = append(g.keys, r.IdempotencyKey)
	g.mu.Unlock()
	first := false
	g.once.Do(func() { first = true; close(g.started) })
	if !first {
		return g.Gateway.Charge(ctx, r)
	}
	<-g.release
	defer close(g.firstDone)
	return g.Gateway.Charge(ctx, r)
}

func TestSaga_WorkerKilledMidCharge_OneCharge(t *testing.T) {
	t.Parallel()
	sb := sandbox.New()
	gw := &holdFirstGateway{Gateway: sb, started: make(chan struct{}), release: make(chan struct{}), firstDone: make(chan struct{})}
	s := testutil.NewStack(t, testutil.StackOptions{NoWorkers: true})
	s.Product(t, "WK", 100, map[string]int{"w": 10})

	// Worker A takes the message and hangs in the charge; then its connection dies.
	wA, _ := workers.NewPaymentWorker(s.Payments, gw, testLogger(), time.Now)
	brokerA := broker.New(testutil.AMQPURL(), s.Topology, nil)
	ctxA, cancelA := context.WithCancel(context.Background())
	doneA := make(chan struct{})
	go func() {
		defer close(doneA)
		wA.Run(ctxA, brokerA, broker.ConsumeOptions{Prefetch: 1, Concurrency: 1})
	}()
	var once sync.Once
	releaseA := func() { once.Do(func() { close(gw.release) }) }
	t.Cleanup(func() { cancelA(); releaseA(); <-doneA })

	id := s.Checkout(t, "c", "k", "tok_visa", line("WK", 1))
	select {
	case <-gw.started:
	case <-time.After(10 * time.Second):
		t.Fatal("worker A never started the charge")
	}
	cancelA()
	brokerA.Close() // killed: its unacked message goes back to the queue

	// Worker B gets the message again and pays the order.
	wB, _ := workers.NewPaymentWorker(s.Payments, gw, testLogger(), time.Now)
	brokerB := broker.New(testutil.AMQPURL(), s.Topology, nil)
	s.Go(func(ctx context.Context) error {
		defer brokerB.Close()
		return wB.Run(ctx, brokerB, broker.ConsumeOptions{Prefetch: 1, Concurrency: 1})
	})
	s.WaitStatus(t, id, checkout.StatusPaid, 10*time.Second)

	// Only now does A's charge reach the provider; wait for it and for A to finish.
	releaseA()
	<-gw.firstDone
	<-doneA
	gw.mu.Lock()
	keys := append([]string(nil), gw.keys...)
	gw.mu.Unlock()
	if len(keys) != 2 || keys[0] != keys[1] {
		t.Fatalf("charge calls with keys %v, want two with one key (A's and B's attempt are the same charge)", keys)
	}
	if got := sb.ChargeCount(); got != 1 {
		t.Fatalf("%d charges, want 1", got)
	}
	o, err := s.Orders.Order(context.Background(), id)
	if err != nil || o.Status != checkout.StatusPaid {
		t.Fatalf("order %+v %v, want PAID", o, err)
	}
	if p, err := s.Payments.Payment(context.Background(), id); err != nil || p == nil || p.Status != checkout.PaymentSucceeded {
		t.Fatalf("payment %+v %v, want succeeded", p, err)
	}
}

func TestSaga_ConcurrentRelays_AllDeliveredInOrderPerOrder(t *testing.T) {
	t.Parallel()
	audit := broker.Consumer{Name: "audit", Types: event.OrderTypes}
	s := testutil.NewStack(t, testutil.StackOptions{NoRelay: true, NoWorkers: true, NoSweeper: true, Extra: []broker.Consumer{audit}})
	s.Product(t, "CR", 100, map[string]int{"w": 1000})
	for i := 0; i < 3; i++ {
		relay, err := outbox.NewRelay(s.DB.DB, s.Broker, time.Now, outbox.RelayOptions{Batch: 7, Poll: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		s.Go(relay.Run)
	}
	var mu sync.Mutex
	seqs := map[string][]int{}
	total, markerSeen := 0, false
	consumer := broker.New(testutil.AMQPURL(), s.Topology, nil)
	s.Go(func(ctx context.Context) error {
		defer consumer.Close()
		return consumer.Consume(ctx, "audit", broker.ConsumeOptions{Prefetch: 1, Concurrency: 1}, func(ctx context.Context, env event.Envelope) error {
			var p event.OrderPayload
			json.Unmarshal(env.Payload, &p)
			mu.Lock()
			defer mu.Unlock()
			if env.AggregateID == "marker" {
				markerSeen = true
				return nil
			}
			seqs[p.Order.ID] = append(seqs[p.Order.ID], p.Order.Sequence)
			total++
			return nil
		})
	})
	// 40 orders, each placed then cancelled: two events per order, written while the
	// relays run.
	var wg sync.WaitGroup
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			id, err := s.Place(fmt.Sprint("c", i), "k", "tok_visa", line("CR", 1))
			if err != nil {
				t.Error(err)
				return
			}
			if _, err := s.Service.CancelOrder(context.Background(), checkout.Actor{CustomerID: fmt.Sprint("c", i)}, id); err != nil {
				t.Error(err)
			}
		}(i)
	}
	wg.Wait()
	// Once the outbox is drained every copy the relays sent is in the audit queue; a
	// marker published after them arrives behind them all (one consumer, in order).
	testutil.Eventually(t, 20*time.Second, "the outbox drained", func() bool {
		n, _, _ := outbox.Backlog(context.Background(), s.DB, time.Now())
		return n == 0
	})
	marker, err := event.New(event.OrderPlaced, "marker", time.Now(), event.OrderPayload{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Broker.Publish(context.Background(), []event.Envelope{marker}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, "the marker behind every event", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return markerSeen
	})
	mu.Lock()
	defer mu.Unlock()
	if total != 80 || len(seqs) != 40 {
		t.Fatalf("received %d events of %d orders, want 80 of 40", total, len(seqs))
	}
	for id, ss := range seqs {
		if len(ss) != 2 || ss[0] != 1 || ss[1] != 2 {
			t.Fatalf("order %s events arrived as sequences %v, want [1 2]", id, ss)
		}
	}
}

func TestSaga_Expiry_ReleasesStock(t *testing.T) {
	t.Parallel()
	s := testutil.NewStack(t, testutil.StackOptions{TTL: time.Second, NoWorkers: true})
	s.Product(t, "EX", 100, map[string]int{"w": 3})
	id := s.Checkout(t, "c", "k", "tok_visa", line("EX", 3))
	if _, reserved := s.Stock(t, "EX"); reserved != 3 {
		t.Fatalf("reserved %d", reserved)
	}
	s.WaitStatus(t, id, checkout.StatusExpired, 10*time.Second)
	if onHand, reserved := s.Stock(t, "EX"); onHand != 3 || reserved != 0 {
		t.Fatalf("after expiry %d/%d, want 3/0", onHand, reserved)
	}
	if n := s.Count(t, "SELECT count(*) FROM outbox WHERE type = 'order.expired'"); n != 1 {
		t.Fatalf("%d order.expired events", n)
	}
	// The stock is on sale again.
	s.Checkout(t, "d", "k", "tok_visa", line("EX", 3))

	// A payment that arrives now is refunded and the order says why; it stays EXPIRED.
	pid := "pi_late"
	o, _, err := s.Payments.Settle(context.Background(), workers.PaymentConsumer, "late-event", checkout.PaymentReport{OrderID: id, Provider: "sandbox",
		ProviderPaymentID: pid, AmountCents: 300, Currency: "USD", Result: checkout.PaymentResult{Status: checkout.PaymentSucceeded}})
	if err != nil {
		t.Fatal(err)
	}
	if o.Status != checkout.StatusExpired || o.PaymentFailureReason == nil {
		t.Fatalf("late payment: %+v", o)
	}
	if n := s.Count(t, "SELECT count(*) FROM outbox WHERE type = 'payment.refund_requested' AND aggregate_id = ?", id); n != 1 {
		t.Fatalf("%d refund requests", n)
	}
}

// parkingGateway parks every charge until the test lets that order's charge through.
type parkingGateway struct {
	payment.Gateway
	entered chan string // order ids, as their charge enters the provider call
	mu      sync.Mutex
	gates   map[string]chan struct{}
	stop    chan struct{} // closed at cleanup: a failing test never leaves a charge hanging
}

func (g *parkingGateway) gate(orderID string) chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.gates[orderID] == nil {
		g.gates[orderID] = make(chan struct{})
	}
	return g.gates[orderID]
}

// let lets orderID's charge reach the provider.
func (g *parkingGateway) let(orderID string) { close(g.gate(orderID)) }

func (g *parkingGateway) Charge(ctx context.Context, r payment.ChargeRequest) (payment.Charge, error) {
	select {
	case g.entered <- r.OrderID:
	case <-g.stop:
	}
	select {
	case <-g.gate(r.OrderID):
	case <-g.stop:
	case <-ctx.Done():
		return payment.Charge{}, ctx.Err()
	}
	return g.Gateway.Charge(ctx, r)
}

// hookedOrders runs before(id) ahead of each Transition: the sweeper has listed the
// order as expired and is about to take its row lock.
type hookedOrders struct {
	checkout.OrderStore
	before func(id string)
	after  func(id string)
}

func (h hookedOrders) Transition(ctx context.Context, id string, decide func(o *checkout.Order) (checkout.Change, error)) (checkout.Order, error) {
	h.before(id)
	o, err := h.OrderStore.Transition(ctx, id, decide)
	h.after(id)
	return o, err
}

// Every order's charge is in flight when the sweeper finds its reservation run out. For
// half of them the payment lands between the sweeper's listing and its row lock (the
// payment wins); for the other half the sweeper expires the order first and the charge
// succeeds after (the expiry wins, and the money must go back). Both happen, every run.
func TestSaga_ExpiryPaymentRace_NoPaidOrderWithoutStock(t *testing.T) {
	t.Parallel()
	const n = 6 // within the stack's 8 concurrent charges: all are in flight together
	sb := sandbox.New()
	gw := &parkingGateway{Gateway: sb, entered: make(chan string, n), gates: map[string]chan struct{}{}, stop: make(chan struct{})}
	s := testutil.NewStack(t, testutil.StackOptions{Gateway: gw, NoSweeper: true})
	t.Cleanup(func() { close(gw.stop) })
	s.Product(t, "RACE", 100, map[string]int{"w": 100})
	payWins := map[string]bool{}
	var ids []string
	for i := 0; i < n; i++ {
		id := s.Checkout(t, fmt.Sprint("c", i), "k", "tok_visa", line("RACE", 1))
		ids = append(ids, id)
		payWins[id] = i%2 == 0
	}
	for range ids {
		select {
		case <-gw.entered:
		case <-time.After(20 * time.Second):
			t.Fatal("not every charge reached the provider")
		}
	}

	// The sweeper's clock is past every reservation; the charges are all in flight.
	orders := hookedOrders{OrderStore: s.Orders,
		before: func(id string) {
			if payWins[id] {
				gw.let(id)
				s.WaitStatus(t, id, checkout.StatusPaid, 20*time.Second)
			}
		},
		after: func(id string) {
			if !payWins[id] {
				gw.let(id)
			}
		}}
	sweeper := workers.NewSweeper(orders, nil, func() time.Time { return time.Now().Add(time.Hour) }, workers.SweeperOptions{Logger: testLogger()})
	expiredBySweep, err := sweeper.SweepOnce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if expiredBySweep != n/2 {
		t.Fatalf("the sweep expired %d orders, want %d (the ones whose payment had not landed)", expiredBySweep, n/2)
	}

	// Let every outcome settle: the late payments are refunded.
	for _, id := range ids {
		if payWins[id] {
			s.WaitStatus(t, id, checkout.StatusPaid, 20*time.Second)
			continue
		}
		testutil.Eventually(t, 20*time.Second, "the late charge of "+id+" settled", func() bool {
			p, err := s.Payments.Payment(context.Background(), id)
			return err == nil && p != nil && p.Status != checkout.PaymentAttempted
		})
		o, err := s.Orders.Order(context.Background(), id)
		if err != nil || o.Status != checkout.StatusExpired {
			t.Fatalf("order %s, expired and its stock back on sale, then paid late: %+v %v; want it EXPIRED", id, o, err)
		}
		waitPayment(t, s, id, checkout.PaymentRefunded)
		if o, _ := s.Orders.Order(context.Background(), id); o.PaymentFailureReason == nil {
			t.Fatalf("expired order %s paid late says nothing of the refund: %+v", id, o)
		}
	}
	paid := s.Count(t, "SELECT count(*) FROM orders WHERE status = 'PAID'")
	expired := s.Count(t, "SELECT count(*) FROM orders WHERE status = 'EXPIRED'")
	if paid != n/2 || expired != n/2 {
		t.Fatalf("paid %d, expired %d; want %d of each", paid, expired, n/2)
	}
	// Every paid order's stock is sold; no paid order has released stock.
	if c := s.Count(t, "SELECT count(*) FROM reservations r JOIN orders o ON o.id = r.order_id WHERE o.status = 'PAID' AND r.status <> 'SOLD'"); c != 0 {
		t.Fatalf("%d reservations of paid orders not sold", c)
	}
	// Every charge that stands belongs to a paid order: the others were refunded.
	if c := s.Count(t, "SELECT count(*) FROM payments p JOIN orders o ON o.id = p.order_id WHERE p.status = 'succeeded' AND o.status <> 'PAID'"); c != 0 {
		t.Fatalf("%d charges stand for unpaid orders", c)
	}
	if sb.ChargeCount() != n || sb.RefundCount() != n/2 {
		t.Fatalf("%d charges, %d refunds; want %d and %d", sb.ChargeCount(), sb.RefundCount(), n, n/2)
	}
	onHand, reserved := s.Stock(t, "RACE")
	if reserved != 0 || onHand != 100-paid {
		t.Fatalf("stock on hand %d reserved %d, want %d/0", onHand, reserved, 100-paid)
	}
}

func TestSweeper_PrunesOldKeysAndInbox_KeepsRecentOnes(t *testing.T) {
	t.Parallel()
	s := testutil.NewStack(t, testutil.StackOptions{NoRelay: true, NoWorkers: true, NoSweeper: true})
	s.Product(t, "PR", 100, map[string]int{"w": 10})
	old := s.Checkout(t, "c", "old-key", "tok_visa", line("PR", 1))
	s.Checkout(t, "c", "new-key", "tok_visa", line("PR", 1))
	s.DB.ExecContext(context.Background(), "UPDATE idempotency_keys SET created_at = now() - interval '8 days' WHERE key = 'old-key'")
	s.DB.ExecContext(context.Background(), "INSERT INTO inbox (consumer, event_id, processed_at) VALUES ('payment', 'e-old', now() - interval '8 days'), ('payment', 'e-new', now())")
	m := store.NewMaintenance(s.DB.DB, time.Now)
	n, err := m.PruneKeys(context.Background(), 7*24*time.Hour)
	if err != nil || n != 2 {
		t.Fatalf("pruned %d (%v), want 2", n, err)
	}
	if got := s.Count(t, "SELECT count(*) FROM idempotency_keys"); got != 1 {
		t.Fatalf("%d keys left, want 1", got)
	}
	if got := s.Count(t, "SELECT count(*) FROM inbox"); got != 1 {
		t.Fatalf("%d inbox rows left, want 1", got)
	}
	// The order stays; only its key went.
	if o, _ := s.Orders.Order(context.Background(), old); o == nil {
		t.Fatal("the order of a pruned key is gone")
	}
	if _, err := m.PruneKeys(context.Background(), time.Hour); err == nil {
		t.Fatal("pruned keys younger than 24 hours")
	}
}
