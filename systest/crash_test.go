package systest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/uptrace/bun"

	"github.com/checkout-backend/checkout/internal/broker"
	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/node"
	"github.com/checkout-backend/checkout/internal/payment"
	"github.com/checkout-backend/checkout/internal/payment/sandbox"
	clog "github.com/checkout-backend/checkout/internal/platform/log"
	"github.com/checkout-backend/checkout/internal/store"
	"github.com/checkout-backend/checkout/internal/testutil"
	"github.com/checkout-backend/checkout/internal/webhook"
	"github.com/checkout-backend/checkout/outbox"
	"github.com/checkout-backend/checkout/workers"
)

// The tests below lose the commits that outbox.NoFlushWait makes asynchronous, on
// purpose, and check what users rely on afterwards. Such a commit stays in PostgreSQL's
// WAL buffers (shared memory) until the WAL writer writes it or a later synchronous
// commit flushes WAL past it; a SIGKILL of the server's whole process tree loses it.
// To make the loss certain rather than likely, the node's WAL writer waits 10s between
// rounds (wal_writer_delay's maximum), autovacuum (whose commits flush) is off, the
// stack runs without the sweeper and without the consumers that would commit next, and
// PostgreSQL is killed from inside the component under test, right after the write.
// After the restart each test checks the write was indeed lost, and fails saying so if
// it was not: it cannot pass without testing anything.

// startCrashNode starts a private PostgreSQL node whose unflushed asynchronous commits a
// Kill loses.
func startCrashNode(t *testing.T) *node.Postgres {
	t.Helper()
	return node.StartPostgres(t, node.PostgresOptions{Settings: map[string]string{
		"wal_writer_delay": "10s",
		"autovacuum":       "off",
	}})
}

// crash kills a node once, from whichever goroutine reaches the chosen moment first.
// Before the kill it records whether WAL was inserted but not yet written (what the kill
// is meant to lose) and lets the caller look at the database (check).
type crash struct {
	n     *node.Postgres
	conn  *pgx.Conn // opened beforehand: the moment is not spent connecting
	check func(ctx context.Context, c *pgx.Conn) error
	once  sync.Once
	done  chan struct{}

	// Set before done is closed.
	at        time.Time // just before the kill
	walBehind bool      // pg_current_wal_lsn() < pg_current_wal_insert_lsn() then
	checkErr  error
}

func newCrash(t *testing.T, n *node.Postgres, url string) *crash {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	cr := &crash{n: n, conn: c, done: make(chan struct{})}
	// A test that ends before the moment closes the connection (and no kill follows).
	t.Cleanup(func() { cr.once.Do(func() { c.Close(context.Background()) }) })
	return cr
}

// kill runs the check, kills the node (SIGKILL to its whole process tree) and closes
// done; only the first call does anything.
func (c *crash) kill() {
	c.once.Do(func() {
		defer close(c.done)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if c.check != nil {
			c.checkErr = c.check(ctx, c.conn)
		}
		if err := c.conn.QueryRow(ctx, "SELECT pg_current_wal_lsn() < pg_current_wal_insert_lsn()").Scan(&c.walBehind); err != nil && c.checkErr == nil {
			c.checkErr = fmt.Errorf("WAL positions: %w", err)
		}
		c.at = time.Now()
		c.n.Kill()
		c.conn.Close(context.Background())
	})
}

// await waits for the kill and restarts the node; it fails t if neither happens.
func (c *crash) await(t *testing.T, what string) {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
	if c.checkErr != nil {
		t.Fatalf("before the kill: %v", c.checkErr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.n.Restart(ctx); err != nil {
		t.Fatalf("restart PostgreSQL after the kill: %v", err)
	}
	t.Logf("PostgreSQL killed at %s (WAL inserted but not written then: %v) and restarted", what, c.walBehind)
}

// lostWrite fails t saying the test did not test anything: the write it meant to lose
// survived the crash.
func (c *crash) lostWrite(t *testing.T, format string, args ...any) {
	t.Helper()
	t.Fatalf("the test did not lose the write: "+format+" (WAL inserted but not written before the kill: %v; a synchronous commit or the WAL writer flushed it)",
		append(args, c.walBehind)...)
}

// scalar runs a one-row query on a fresh connection: the stack's pools may still hold
// connections the crash broke, and a test must not fail on those.
func scalar(t *testing.T, url, query string, args []any, dest ...any) {
	t.Helper()
	var err error
	for range 50 {
		err = func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := pgx.Connect(ctx, url)
			if err != nil {
				return err
			}
			defer c.Close(context.Background())
			return c.QueryRow(ctx, query, args...).Scan(dest...)
		}()
		if err == nil || errors.Is(err, pgx.ErrNoRows) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

func countRows(t *testing.T, url, query string, args ...any) int {
	t.Helper()
	var n int
	scalar(t, url, query, args, &n)
	return n
}

func waitOrderStatus(t *testing.T, url, orderID string, want checkout.Status) {
	t.Helper()
	var last string
	testutil.Eventually(t, 30*time.Second, "order "+orderID+" to reach "+string(want), func() bool {
		scalar(t, url, "SELECT status FROM orders WHERE id = $1", []any{orderID}, &last)
		return last == string(want)
	})
}

// countingGateway is the sandbox provider, counting every Charge call and answer per
// idempotency key; afterFirstCharge runs once, after the provider made the first charge
// and before its answer is returned.
type countingGateway struct {
	*sandbox.Gateway
	afterFirstCharge func(r payment.ChargeRequest)

	once    sync.Once
	mu      sync.Mutex
	calls   map[string]int
	answers map[string][]payment.Charge
}

func newCountingGateway() *countingGateway {
	return &countingGateway{Gateway: sandbox.New(), calls: map[string]int{}, answers: map[string][]payment.Charge{}}
}

func (g *countingGateway) Charge(ctx context.Context, r payment.ChargeRequest) (payment.Charge, error) {
	c, err := g.Gateway.Charge(ctx, r)
	g.mu.Lock()
	g.calls[r.IdempotencyKey]++
	if err == nil {
		g.answers[r.IdempotencyKey] = append(g.answers[r.IdempotencyKey], c)
	}
	g.mu.Unlock()
	if err == nil && g.afterFirstCharge != nil {
		g.once.Do(func() { g.afterFirstCharge(r) })
	}
	return c, err
}

// checkChargedOnce checks that the provider made one charge in all, a succeeded one
// under the order's idempotency key, and answered every call for it with that charge;
// it returns the charge and how many calls were made.
func (g *countingGateway) checkChargedOnce(t *testing.T, orderID string) (payment.Charge, int) {
	t.Helper()
	key := workers.ChargeKey(orderID)
	g.mu.Lock()
	defer g.mu.Unlock()
	if n := g.ChargeCount(); n != 1 {
		t.Fatalf("the provider made %d charges, want 1 (charges %+v)", n, g.Charges())
	}
	for k, n := range g.calls {
		if k != key {
			t.Errorf("%d Charge calls under idempotency key %q, want only %q", n, k, key)
		}
	}
	answers := g.answers[key]
	if len(answers) == 0 {
		t.Fatalf("no successful Charge call for %s", key)
	}
	first := answers[0]
	if first.Status != payment.StatusSucceeded {
		t.Fatalf("the charge is %+v, want succeeded", first)
	}
	for i, a := range answers[1:] {
		if a != first {
			t.Errorf("Charge call %d for %s answered %+v, want the first charge %+v", i+2, key, a, first)
		}
	}
	return first, g.calls[key]
}

// outcomes counts a consumer's outcomes (broker.ConsumeOptions.Observe).
type outcomes struct {
	mu sync.Mutex
	n  map[string]int // "consumer outcome" -> count
}

func (o *outcomes) observe(consumer, outcome string, _ bool, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.n == nil {
		o.n = map[string]int{}
	}
	o.n[consumer+" "+outcome]++
}

func (o *outcomes) get(consumer, outcome string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.n[consumer+" "+outcome]
}

func (o *outcomes) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return fmt.Sprint(o.n)
}

// runUntilCleanup runs fn until t's cleanup, which waits for it.
func runUntilCleanup(t *testing.T, fn func(ctx context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); fn(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
}

type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	if testing.Verbose() {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func testLogger(t *testing.T) *slog.Logger { return clog.New(logWriter{t}, 0) }

// startPaymentWorkers runs the stack's payment worker as NewStack would, had it not
// been told NoWorkers.
func startPaymentWorkers(t *testing.T, s *testutil.Stack, seen *outcomes) {
	sub := broker.New(testutil.AMQPURL(), s.Topology, testLogger(t))
	runUntilCleanup(t, func(ctx context.Context) error {
		return s.Workers.Run(ctx, sub, broker.ConsumeOptions{Prefetch: 16, Concurrency: 8,
			Retry: outbox.Scheduler(s.DB.DB, time.Now), Observe: seen.observe})
	})
	t.Cleanup(func() { sub.Close() }) // runs first: the worker stops consuming, then returns
}

// startPartnerWebhooks runs the partner webhook consumers as NewStack's Webhooks option
// would.
func startPartnerWebhooks(t *testing.T, s *testutil.Stack, seen *outcomes) {
	wh := workers.NewWebhooks(s.WebhookStore, time.Now, workers.WebhookOptions{Policy: webhook.Policy{AllowPrivate: true},
		Delivery: store.DeliveryPolicy{Retry: webhook.Retry{Base: 50 * time.Millisecond, MaxAge: time.Minute}},
		Timeout:  2 * time.Second, Poll: 20 * time.Millisecond, Logger: testLogger(t)})
	sub := broker.New(testutil.AMQPURL(), s.Topology, testLogger(t))
	runUntilCleanup(t, func(ctx context.Context) error {
		return wh.Run(ctx, sub, broker.ConsumeOptions{Prefetch: 16, Concurrency: 8, Observe: seen.observe})
	})
	t.Cleanup(func() { sub.Close() })
}

// queued is how many messages wait in a consumer's queue.
func queued(t *testing.T, s *testutil.Stack, consumer string) int {
	t.Helper()
	conn, err := amqp.Dial(testutil.AMQPURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	q, err := ch.QueueDeclarePassive(s.Topology.Queue(consumer), true, false, false, false, nil)
	if err != nil {
		t.Fatalf("queue of %s: %v", consumer, err)
	}
	return q.Messages
}

// partnerEndpoint is a partner's webhook endpoint: it records every event it is sent.
type partnerEndpoint struct {
	mu       sync.Mutex
	received []partnerEvent
}

type partnerEvent struct {
	ID   string `json:"id"`
	Type string `json:"type"`
	Data struct {
		Order struct {
			ID       string `json:"id"`
			Sequence int    `json:"sequence"`
		} `json:"order"`
	} `json:"data"`
}

func (p *partnerEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var ev partnerEvent
	if err := json.Unmarshal(body, &ev); err != nil {
		w.WriteHeader(400)
		return
	}
	p.mu.Lock()
	p.received = append(p.received, ev)
	p.mu.Unlock()
	w.WriteHeader(204)
}

func (p *partnerEndpoint) events() []partnerEvent {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]partnerEvent(nil), p.received...)
}

// markHook is a query hook that kills PostgreSQL right after the relay's first publish
// mark (outbox.MarkPublished) committed, and holds the relay there until release is
// closed: the test looks at the restarted node before the relay can publish again.
type markHook struct {
	crash   *crash
	fired   atomic.Bool
	release chan struct{}
}

func (h *markHook) BeforeQuery(ctx context.Context, _ *bun.QueryEvent) context.Context { return ctx }

func (h *markHook) AfterQuery(_ context.Context, e *bun.QueryEvent) {
	// The relay's pool talks to PostgreSQL directly, so the mark is its prepared
	// statement (pgprep); a pooled one would send the text.
	q := strings.TrimSpace(e.Query)
	mark := strings.HasPrefix(q, "EXECUTE outbox_mark_published") || strings.HasPrefix(q, "UPDATE outbox SET published_at")
	if e.Err != nil || !mark || !h.fired.CompareAndSwap(false, true) {
		return
	}
	h.crash.kill()
	<-h.release
}

// TestCrash_AsyncMarksLost_EventsRedeliveredOnce loses the relay's publish mark of an
// acknowledged order's order.placed (outbox.MarkPublished commits without waiting for
// its flush): PostgreSQL is killed as soon as the mark committed and restarted. The
// order is there, its order.placed is unpublished again, and the relay publishes it a
// second time, so each consumer's queue holds it twice. Then the consumers run: the
// order is PAID, charged once, and a partner's webhook endpoint receives order.placed
// and order.paid once each, in order: the consumers deduplicate by event id.
func TestCrash_AsyncMarksLost_EventsRedeliveredOnce(t *testing.T) {
	testutil.Slow(t) // a private PostgreSQL node of its own, killed and restarted
	t.Parallel()
	pg := startCrashNode(t)
	gw := newCountingGateway()
	// No relay of the stack's (the test runs its own, hooked), and no consumer until
	// the crash is over: their commits are synchronous and would flush the mark.
	s := testutil.NewStack(t, testutil.StackOptions{DatabaseURL: pg.URL(), NoRelay: true, NoWorkers: true, NoSweeper: true,
		Gateway: gw, Extra: workers.WebhookConsumers()})
	s.Product(t, "CRASH-MARK", 1500, map[string]int{"w": 10})
	partner := &partnerEndpoint{}
	srv := httptest.NewServer(partner)
	defer srv.Close()
	ctx := context.Background()
	ops := checkout.Actor{CustomerID: "ops", Admin: true}
	endpoint, _, err := webhook.NewService(s.WebhookStore, webhook.Policy{AllowPrivate: true}, func() string { return uuid.Must(uuid.NewV7()).String() }).
		Register(ctx, ops, srv.URL, []string{"*"})
	if err != nil {
		t.Fatal(err)
	}

	cr := newCrash(t, pg, s.DB.URL)
	hook := &markHook{crash: cr, release: make(chan struct{})}
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(hook.release) }) }
	relayDB, err := store.Open(ctx, s.DB.URL, store.Options{MaxOpenConns: 4, QueryHook: hook})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { relayDB.Close() }) // runs last, once the relay stopped
	relay, err := outbox.NewRelay(relayDB, s.Broker, time.Now, outbox.RelayOptions{Batch: 100, Poll: 100 * time.Millisecond,
		PublishTimeout: 5 * time.Second, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	runUntilCleanup(t, relay.Run)
	t.Cleanup(release) // runs first: a test that failed half-way does not leave the relay held

	placed := "SELECT published_at FROM outbox WHERE aggregate_id = $1 AND type = 'order.placed'"
	var markedBeforeKill *time.Time
	cr.check = func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, "SELECT published_at FROM outbox WHERE type = 'order.placed'").Scan(&markedBeforeKill)
	}
	id := s.Checkout(t, "alice", "crash-mark", "tok_visa", checkout.Line{SKU: "CRASH-MARK", Quantity: 1})
	cr.await(t, "the relay's publish mark of order.placed")
	if markedBeforeKill == nil {
		t.Fatal("the relay's mark did not show order.placed published before the kill")
	}

	// The acknowledged order survived; its publish mark did not.
	if n := countRows(t, s.DB.URL, "SELECT count(*) FROM orders WHERE id = $1", id); n != 1 {
		t.Fatalf("acknowledged order %s is not in the database after the restart", id)
	}
	var publishedAt *time.Time
	scalar(t, s.DB.URL, placed, []any{id}, &publishedAt)
	if publishedAt != nil {
		cr.lostWrite(t, "order.placed is still marked published (at %s) after the crash", publishedAt)
	}
	release()

	// The relay publishes it again: each consumer's queue holds it twice.
	testutil.Eventually(t, 30*time.Second, "order.placed published again", func() bool {
		scalar(t, s.DB.URL, placed, []any{id}, &publishedAt)
		return publishedAt != nil
	})
	for _, c := range []string{workers.PaymentConsumer, workers.WebhookFanOutConsumer} {
		testutil.Eventually(t, 10*time.Second, "order.placed twice in the "+c+" queue", func() bool { return queued(t, s, c) == 2 })
	}

	seen := &outcomes{}
	startPaymentWorkers(t, s, seen)
	startPartnerWebhooks(t, s, seen)
	waitOrderStatus(t, s.DB.URL, id, checkout.StatusPaid)
	// Every copy handled (the fan-out takes events one at a time, in queue order:
	// order.placed twice, then order.paid), and every delivery task done.
	testutil.Eventually(t, 30*time.Second, "both copies of order.placed and order.paid handled by the fan-out", func() bool {
		return seen.get(workers.WebhookFanOutConsumer, "ack") >= 3 && seen.get(workers.PaymentConsumer, "ack") >= 2
	})
	testutil.Eventually(t, 30*time.Second, "the endpoint's deliveries done", func() bool {
		return countRows(t, s.DB.URL, "SELECT count(*) FROM webhook_tasks WHERE webhook_id = $1 AND status IN ('PENDING', 'QUEUED')", endpoint.ID) == 0 &&
			len(partner.events()) >= 2
	})

	got := partner.events()
	var summary []string
	for _, e := range got {
		summary = append(summary, fmt.Sprintf("%s %s (order %s, sequence %d)", e.Type, e.ID, e.Data.Order.ID, e.Data.Order.Sequence))
	}
	if len(got) != 2 || got[0].Type != "order.placed" || got[1].Type != "order.paid" || got[0].ID == got[1].ID ||
		got[0].Data.Order.ID != id || got[1].Data.Order.ID != id {
		t.Fatalf("the partner received %v, want order.placed then order.paid of order %s, each once", summary, id)
	}
	if n := countRows(t, s.DB.URL, "SELECT count(*) FROM webhook_tasks WHERE webhook_id = $1", endpoint.ID); n != 2 {
		t.Fatalf("%d delivery tasks for the endpoint, want 2 (one per event)", n)
	}
	charge, calls := gw.checkChargedOnce(t, id)
	t.Logf("order.placed published twice; consumers %s; partner received %v; provider charged once (%s) in %d Charge calls",
		seen, summary, charge.ProviderPaymentID, calls)
}

// TestCrash_AsyncChargeAttemptLost_ChargedOnce loses the payment worker's attempted
// payment row (store.Payments.RecordAttempt commits without waiting for its flush):
// PostgreSQL is killed inside the provider call, after the provider charged, so the
// settlement cannot commit. After the restart the row written before the kill is gone;
// order.placed, never acknowledged, is delivered again, the worker charges again under
// the same idempotency key, the provider answers with the first charge, and the order
// is PAID with exactly one charge.
func TestCrash_AsyncChargeAttemptLost_ChargedOnce(t *testing.T) {
	testutil.Slow(t) // a private PostgreSQL node of its own, killed and restarted
	t.Parallel()
	pg := startCrashNode(t)
	gw := newCountingGateway()
	s := testutil.NewStack(t, testutil.StackOptions{DatabaseURL: pg.URL(), NoWorkers: true, NoSweeper: true, Gateway: gw})
	s.Product(t, "CRASH-PAY", 1500, map[string]int{"w": 10})
	cr := newCrash(t, pg, s.DB.URL)
	var attempt struct {
		status string
		at     time.Time
	}
	cr.check = func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, "SELECT status, created_at FROM payments").Scan(&attempt.status, &attempt.at)
	}
	gw.afterFirstCharge = func(payment.ChargeRequest) { cr.kill() }

	id := s.Checkout(t, "bob", "crash-pay", "tok_visa", checkout.Line{SKU: "CRASH-PAY", Quantity: 1})
	// The workers start once the relay published order.placed: from then on, nothing
	// commits synchronously before the kill (the checkout's own commit, and the NOTIFY
	// that wakes relays, are behind us).
	testutil.Eventually(t, 30*time.Second, "order.placed published", func() bool {
		return countRows(t, s.DB.URL, "SELECT count(*) FROM outbox WHERE aggregate_id = $1 AND type = 'order.placed' AND published_at IS NOT NULL", id) == 1
	})
	seen := &outcomes{}
	startPaymentWorkers(t, s, seen)
	cr.await(t, "the provider's charge")
	if attempt.status != checkout.PaymentAttempted {
		t.Fatalf("the payment row was %q when the provider was called, want %q", attempt.status, checkout.PaymentAttempted)
	}

	if n := countRows(t, s.DB.URL, "SELECT count(*) FROM orders WHERE id = $1", id); n != 1 {
		t.Fatalf("acknowledged order %s is not in the database after the restart", id)
	}
	// The attempt written before the kill is gone. The worker may already have
	// recorded the attempt again (the redelivery is not held back): that row is dated
	// after the kill.
	if n := countRows(t, s.DB.URL, "SELECT count(*) FROM payments WHERE order_id = $1 AND created_at <= $2", id, cr.at); n != 0 {
		cr.lostWrite(t, "the attempted payment row written at %s is still there after the crash", attempt.at)
	}

	waitOrderStatus(t, s.DB.URL, id, checkout.StatusPaid)
	// The delivery in hand at the crash was not acknowledged: its settlement and its
	// retry could not commit, and it went back to the queue.
	testutil.Eventually(t, 30*time.Second, "the delivery in hand at the crash back in the queue, unacknowledged", func() bool {
		return seen.get(workers.PaymentConsumer, "requeue") >= 1
	})
	charge, calls := gw.checkChargedOnce(t, id)
	if calls < 2 {
		t.Fatalf("%d Charge calls, want the first one and at least one after the crash", calls)
	}
	var status, providerID string
	var created time.Time
	scalar(t, s.DB.URL, "SELECT status, COALESCE(provider_payment_id, ''), created_at FROM payments WHERE order_id = $1", []any{id}, &status, &providerID, &created)
	if status != checkout.PaymentSucceeded || providerID != charge.ProviderPaymentID {
		t.Fatalf("payment %s / %q, want %s / %q (the provider's one charge)", status, providerID, checkout.PaymentSucceeded, charge.ProviderPaymentID)
	}
	if !created.After(cr.at) {
		t.Fatalf("the payment row dates from %s, before the kill at %s: the lost attempt came back", created, cr.at)
	}
	t.Logf("attempt lost in the crash; order.placed handled again (consumer outcomes %s); %d Charge calls answered with the one charge %s",
		seen, calls, charge.ProviderPaymentID)
}
