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
	deadline := time.Now().Add(10 * time.Second)
	for s.Sandbox.RefundCount() == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
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

func waitPayment(t *testing.T, s *testutil.Stack, orderID, status string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		p, err := s.Payments.Payment(context.Background(), orderID)
		if err != nil {
			t.Fatal(err)
		}
		if p != nil && p.Status == status {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	p, _ := s.Payments.Payment(context.Background(), orderID)
	t.Fatalf("payment of %s: %+v, want %s", orderID, p, status)
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
	time.Sleep(300 * time.Millisecond)
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

func TestSaga_RelayCrashAfterConfirm_DuplicatesAbsorbed(t *testing.T) {
	t.Parallel()
	var crashes atomic.Int32
	audit := broker.Consumer{Name: "audit", Types: []string{event.OrderPlaced}}
	s := testutil.NewStack(t, testutil.StackOptions{Extra: []broker.Consumer{audit}, Relay: outbox.RelayOptions{AfterConfirm: func() error {
		// The first two batches reach the broker but are never marked published.
		if crashes.Add(1) <= 2 {
			return fmt.Errorf("relay killed after confirm")
		}
		return nil
	}}})
	s.Product(t, "RC", 100, map[string]int{"w": 10})
	// The audit queue sees what the payment queue sees: every copy the broker delivers.
	var mu sync.Mutex
	copies := map[string]int{}
	auditor := broker.New(testutil.AMQPURL(), s.Topology, nil)
	defer auditor.Close()
	s.Go(func(ctx context.Context) error {
		return auditor.Consume(ctx, "audit", broker.ConsumeOptions{}, func(ctx context.Context, env event.Envelope) error {
			mu.Lock()
			copies[env.ID]++
			mu.Unlock()
			return nil
		})
	})
	id := s.Checkout(t, "c", "k", "tok_visa", line("RC", 1))
	s.WaitStatus(t, id, checkout.StatusPaid, 10*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if n, _, _ := outbox.Backlog(context.Background(), s.DB, time.Now()); n == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // let every duplicate arrive
	if crashes.Load() < 3 {
		t.Fatalf("relay ran %d batches, want the crashes and a success", crashes.Load())
	}
	mu.Lock()
	n := 0
	for _, c := range copies {
		n = max(n, c)
	}
	mu.Unlock()
	if n < 2 {
		t.Fatalf("order.placed reached the consumers %d time(s): the crash made no duplicate to absorb", n)
	}
	if got := s.Sandbox.ChargeCount(); got != 1 {
		t.Fatalf("%d charges for one order, want 1", got)
	}
	if n := s.Count(t, "SELECT count(*) FROM inbox WHERE consumer = 'payment'"); n != 1 {
		t.Fatalf("inbox rows %d, want 1", n)
	}
	if n := s.Count(t, "SELECT count(*) FROM outbox WHERE type = 'order.paid'"); n != 1 {
		t.Fatalf("order.paid events %d, want 1", n)
	}
}

// blockingGateway holds the first charge until released: the worker that took it is
// "killed" meanwhile.
type blockingGateway struct {
	payment.Gateway
	once    sync.Once
	started chan struct{}
	release chan struct{}
}

func (g *blockingGateway) Charge(ctx context.Context, r payment.ChargeRequest) (payment.Charge, error) {
	first := false
	g.once.Do(func() { first = true; close(g.started) })
	if first {
		<-g.release
	}
	return g.Gateway.Charge(ctx, r)
}

func TestSaga_WorkerKilledMidCharge_OneCharge(t *testing.T) {
	t.Parallel()
	sb := sandbox.New()
	gw := &blockingGateway{Gateway: sb, started: make(chan struct{}), release: make(chan struct{})}
	s := testutil.NewStack(t, testutil.StackOptions{NoWorkers: true})
	s.Product(t, "WK", 100, map[string]int{"w": 10})

	// Worker A takes the message and hangs in the charge; then its connection dies.
	wA, _ := workers.NewPaymentWorker(s.Payments, gw, nil, time.Now)
	brokerA := broker.New(testutil.AMQPURL(), s.Topology, nil)
	ctxA, cancelA := context.WithCancel(context.Background())
	defer cancelA()
	go wA.Run(ctxA, brokerA, broker.ConsumeOptions{Prefetch: 1, Concurrency: 1})

	id := s.Checkout(t, "c", "k", "tok_visa", line("WK", 1))
	select {
	case <-gw.started:
	case <-time.After(10 * time.Second):
		t.Fatal("worker A never started the charge")
	}
	cancelA()
	brokerA.Close() // killed: its unacked message goes back to the queue

	wB, _ := workers.NewPaymentWorker(s.Payments, gw, nil, time.Now)
	brokerB := broker.New(testutil.AMQPURL(), s.Topology, nil)
	defer brokerB.Close()
	s.Go(func(ctx context.Context) error {
		return wB.Run(ctx, brokerB, broker.ConsumeOptions{Prefetch: 1, Concurrency: 1})
	})
	s.WaitStatus(t, id, checkout.StatusPaid, 10*time.Second)
	close(gw.release) // A's charge finally reaches the provider, with the same key
	time.Sleep(300 * time.Millisecond)
	if got := sb.ChargeCount(); got != 1 {
		t.Fatalf("%d charges, want 1", got)
	}
	if o, _ := s.Orders.Order(context.Background(), id); o.Status != checkout.StatusPaid {
		t.Fatalf("order %s", o.Status)
	}
}

func TestSaga_ConcurrentRelays_AllDeliveredInOrderPerOrder(t *testing.T) {
	t.Parallel()
	audit := broker.Consumer{Name: "audit", Types: event.OrderTypes}
	s := testutil.NewStack(t, testutil.StackOptions{NoRelay: true, NoWorkers: true, NoSweeper: true, Extra: []broker.Consumer{audit}})
	s.Product(t, "CR", 100, map[string]int{"w": 1000})
	for i := 0; i < 3; i++ {
		relay, err := outbox.NewRelay(s.DB.DB, s.Broker, outbox.RelayOptions{Batch: 7, Poll: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		s.Go(relay.Run)
	}
	var mu sync.Mutex
	seqs := map[string][]int{}
	total := 0
	consumer := broker.New(testutil.AMQPURL(), s.Topology, nil)
	defer consumer.Close()
	s.Go(func(ctx context.Context) error {
		return consumer.Consume(ctx, "audit", broker.ConsumeOptions{Prefetch: 1, Concurrency: 1}, func(ctx context.Context, env event.Envelope) error {
			var p event.OrderPayload
			json.Unmarshal(env.Payload, &p)
			mu.Lock()
			seqs[p.Order.ID] = append(seqs[p.Order.ID], p.Order.Sequence)
			total++
			mu.Unlock()
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
			id := s.Checkout(t, fmt.Sprint("c", i), "k", "tok_visa", line("CR", 1))
			if _, err := s.Service.CancelOrder(context.Background(), checkout.Actor{CustomerID: fmt.Sprint("c", i)}, id); err != nil {
				t.Error(err)
			}
		}(i)
	}
	wg.Wait()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		n := total
		mu.Unlock()
		if n >= 80 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
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

func TestSaga_ExpiryPaymentRace_NoPaidOrderWithoutStock(t *testing.T) {
	t.Parallel()
	// Charges take 0-400 ms while reservations last 300 ms: some payments win, some
	// expiries win, and the losers must be refunded.
	sb := sandbox.New()
	gw := &slowGateway{Gateway: sb}
	s := testutil.NewStack(t, testutil.StackOptions{TTL: 300 * time.Millisecond, Gateway: gw, SweepInterval: 20 * time.Millisecond})
	s.Product(t, "RACE", 100, map[string]int{"w": 1000})
	var ids []string
	for i := 0; i < 30; i++ {
		ids = append(ids, s.Checkout(t, fmt.Sprint("c", i), "k", "tok_visa", line("RACE", 1)))
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if s.Count(t, "SELECT count(*) FROM orders WHERE status = 'PENDING_PAYMENT'") == 0 &&
			s.Count(t, "SELECT count(*) FROM payments WHERE status = 'refund_pending'") == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	paid := s.Count(t, "SELECT count(*) FROM orders WHERE status = 'PAID'")
	expired := s.Count(t, "SELECT count(*) FROM orders WHERE status = 'EXPIRED'")
	if paid+expired != 30 {
		t.Fatalf("paid %d + expired %d != 30", paid, expired)
	}
	// Every paid order's stock is sold; no paid order has released stock.
	if n := s.Count(t, "SELECT count(*) FROM reservations r JOIN orders o ON o.id = r.order_id WHERE o.status = 'PAID' AND r.status <> 'SOLD'"); n != 0 {
		t.Fatalf("%d reservations of paid orders not sold", n)
	}
	// Every charge that stands belongs to a paid order: the others were refunded.
	if n := s.Count(t, "SELECT count(*) FROM payments p JOIN orders o ON o.id = p.order_id WHERE p.status = 'succeeded' AND o.status <> 'PAID'"); n != 0 {
		t.Fatalf("%d charges stand for unpaid orders", n)
	}
	if got, want := sb.ChargeCount()-sb.RefundCount(), paid; got != want {
		t.Fatalf("charges %d - refunds %d = %d, want %d paid", sb.ChargeCount(), sb.RefundCount(), got, want)
	}
	onHand, reserved := s.Stock(t, "RACE")
	if reserved != 0 || onHand != 1000-paid {
		t.Fatalf("stock on hand %d reserved %d, want %d/0", onHand, reserved, 1000-paid)
	}
	t.Logf("paid %d, expired %d, charges %d, refunds %d", paid, expired, sb.ChargeCount(), sb.RefundCount())
}

type slowGateway struct {
	payment.Gateway
	n atomic.Int64
}

func (g *slowGateway) Charge(ctx context.Context, r payment.ChargeRequest) (payment.Charge, error) {
	time.Sleep(time.Duration(g.n.Add(1)%9) * 50 * time.Millisecond)
	return g.Gateway.Charge(ctx, r)
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

func TestRelay_WakesOnNotify_NotOnlyByPolling(t *testing.T) {
	t.Parallel()
	// Polling once an hour: only NOTIFY (the outbox trigger) can wake the relay in time.
	s := testutil.NewStack(t, testutil.StackOptions{Relay: outbox.RelayOptions{Poll: time.Hour}})
	s.Product(t, "NT", 100, map[string]int{"w": 10})
	time.Sleep(300 * time.Millisecond) // the first drain and LISTEN are done
	id := s.Checkout(t, "c", "k", "tok_visa", line("NT", 1))
	s.WaitStatus(t, id, checkout.StatusPaid, 10*time.Second)
}
