package systest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	toxiclient "github.com/Shopify/toxiproxy/v2/client"
	"github.com/sony/gobreaker"

	"github.com/checkout-backend/checkout/internal/broker"
	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/payment/resilience"
	"github.com/checkout-backend/checkout/internal/payment/sandbox"
	stripegw "github.com/checkout-backend/checkout/internal/payment/stripe"
	"github.com/checkout-backend/checkout/internal/platform/metrics"
	"github.com/checkout-backend/checkout/internal/store"
	"github.com/checkout-backend/checkout/internal/testutil"
	"github.com/checkout-backend/checkout/outbox"
	"github.com/checkout-backend/checkout/workers"
)

// placeVia checks out qty of F through api with a token of the customer's. It is safe
// from any goroutine: an answer that is not a GraphQL response is an error.
func placeVia(api *testutil.API, token, key string, qty int) (string, *testutil.Response, error) {
	resp, err := api.Post(token, checkoutMutation, map[string]any{"in": map[string]any{
		"idempotencyKey": key, "paymentToken": "tok_visa", "items": []any{map[string]any{"sku": "F", "quantity": qty}}}})
	if err != nil {
		return "", nil, err
	}
	var r struct {
		Checkout struct {
			Order *struct{ ID string }
		}
	}
	json.Unmarshal(resp.Data, &r)
	if r.Checkout.Order != nil {
		return r.Checkout.Order.ID, resp, nil
	}
	return "", resp, nil
}

// tokens signs one token per customer, prefix0, prefix1...: before the goroutines that
// use them (testutil.Token fails the test, which only the test's goroutine may do).
func tokens(t *testing.T, prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = testutil.Token(t, fmt.Sprint(prefix, i))
	}
	return out
}

// consistent checks what a crash must never leave: every order whole, reserved stock equal
// to what orders hold, one order.placed event per order.
func consistent(t *testing.T, db *testutil.DB, api *testutil.API, initial int) {
	t.Helper()
	ordered := api.Count(t, "SELECT COALESCE(sum(quantity),0)::int FROM order_items")
	onHand, reserved := api.Stock(t, "F")
	if reserved != ordered || onHand != initial {
		t.Fatalf("reserved %d, on hand %d; orders hold %d of %d", reserved, onHand, ordered, initial)
	}
	if n := api.Count(t, `SELECT count(*) FROM orders o WHERE NOT EXISTS (SELECT 1 FROM order_items i WHERE i.order_id = o.id)
		OR NOT EXISTS (SELECT 1 FROM reservations r WHERE r.order_id = o.id)
		OR (SELECT count(*) FROM outbox e WHERE e.aggregate_id = o.id::text AND e.type = 'order.placed') <> 1`); n != 0 {
		t.Fatalf("%d partial orders", n)
	}
}

func TestPostgres_Latency_And_ResetMidCheckout(t *testing.T) {
	t.Parallel()
	testutil.Slow(t)
	direct := testutil.NewDB(t)
	seed := testutil.NewAPI(t, direct)
	seed.Product(t, "F", 100, map[string]int{"w": 1000})
	toxi := testutil.NewToxiproxy(t)
	pg := toxi.Proxy(t, "pg", testutil.PostgresHostPort(t))
	api := testutil.NewAPI(t, direct.Via(t, pg.Listen, store.Options{MaxOpenConns: 8}))

	// 200 ms on every answer from PostgreSQL: slow, but every checkout is whole.
	if _, err := pg.AddToxic("latency", "latency", "downstream", 1, toxiclient.Attributes{"latency": 200}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	start := time.Now()
	slow := tokens(t, "slow", 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if id, resp, err := placeVia(api, slow[i], "k", 1); err != nil {
				t.Errorf("checkout under latency: %v", err)
			} else if id == "" {
				t.Errorf("checkout under latency failed: %s %+v", resp.Data, resp.Errors)
			}
		}(i)
	}
	wg.Wait()
	t.Logf("8 concurrent checkouts with 200 ms PostgreSQL latency took %s", time.Since(start))
	pg.RemoveToxic("latency")

	// Connections reset while checkouts are in flight.
	var failed, placed atomic.Int32
	var codes sync.Map
	stop := make(chan struct{})
	clients := tokens(t, "c", 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				id, resp, err := placeVia(api, clients[i], fmt.Sprint(n), 1)
				if err != nil {
					t.Errorf("checkout during the reset: %v", err)
					continue
				}
				if resp.Status >= 500 {
					t.Errorf("status %d", resp.Status)
				}
				if id != "" {
					placed.Add(1)
				} else if c := resp.ErrorCode(); c != "" {
					failed.Add(1)
					codes.Store(c, resp.Errors[0].Extensions["correlationId"] != nil)
				}
			}
		}(i)
	}
	testutil.Eventually(t, 30*time.Second, "checkouts placed before the reset", func() bool { return placed.Load() >= 8 })
	if _, err := pg.AddToxic("reset", "reset_peer", "upstream", 1, toxiclient.Attributes{"timeout": 0}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, "a checkout caught by the reset", func() bool { return failed.Load() > 0 })
	pg.RemoveToxic("reset")
	recovered := placed.Load()
	testutil.Eventually(t, 30*time.Second, "checkouts placed again after the reset", func() bool { return placed.Load() >= recovered+8 })
	close(stop)
	wg.Wait()
	codes.Range(func(k, v any) bool {
		if k != "SERVICE_UNAVAILABLE" || v != true {
			t.Errorf("clients saw %v (correlation id %v), want SERVICE_UNAVAILABLE with a correlationId", k, v)
		}
		return true
	})
	t.Logf("during the reset: %d placed, %d answered an error", placed.Load(), failed.Load())
	if failed.Load() == 0 {
		t.Fatal("no checkout was caught by the reset: the test did not reset anything in flight")
	}
	// Nothing half-written, and the service recovers by itself.
	consistent(t, direct, seed, 1000)
	if id, resp, err := placeVia(api, testutil.Token(t, "after"), "k", 1); err != nil || id == "" {
		t.Fatalf("no recovery: %v %+v", err, resp)
	}
}

func TestRabbitMQ_Down30s_UnderLoad(t *testing.T) {
	t.Parallel()
	testutil.Slow(t)
	toxi := testutil.NewToxiproxy(t)
	mq := toxi.Proxy(t, "amqp", testutil.AMQPHostPort(t))
	s := testutil.NewStack(t, testutil.StackOptions{AMQPURL: "amqp://guest:guest@" + mq.Listen + "/"})
	s.Product(t, "F", 100, map[string]int{"w": 100000})

	var ids []string
	var mu sync.Mutex
	stop := make(chan struct{})
	done := make(chan struct{})
	var maxBacklog int
	go func() {
		defer close(done)
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond): // the load: a checkout every 50 ms
			}
			id, err := s.Place(fmt.Sprint("c", n%50), fmt.Sprint(n), "tok_visa", checkout.Line{SKU: "F", Quantity: 1})
			if err != nil {
				t.Errorf("checkout while the broker is away: %v", err)
				continue
			}
			mu.Lock()
			ids = append(ids, id)
			mu.Unlock()
			if b, _, err := outbox.Backlog(context.Background(), s.DB, time.Now()); err == nil && b > maxBacklog {
				maxBacklog = b
			}
		}
	}()
	// The path works under load before the broker goes.
	began := time.Now()
	testutil.Eventually(t, 30*time.Second, "orders paid under load", func() bool { return s.Sandbox.ChargeCount() >= 5 })
	if err := mq.Disable(); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	time.Sleep(30 * time.Second) // the behaviour under test: RabbitMQ away for 30 s while checkouts go on
	if err := mq.Enable(); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	// The load goes on after the broker is back, until an order placed since is paid.
	mu.Lock()
	before := len(ids)
	mu.Unlock()
	testutil.Eventually(t, 60*time.Second, "an order placed after the broker came back paid", func() bool {
		mu.Lock()
		defer mu.Unlock()
		if len(ids) <= before {
			return false
		}
		o, err := s.Orders.Order(context.Background(), ids[before])
		return err == nil && o != nil && o.Status == checkout.StatusPaid
	})
	close(stop)
	<-done
	recovered := time.Now()
	mu.Lock()
	placed := append([]string(nil), ids...)
	mu.Unlock()
	t.Logf("%d checkouts placed, broker down for %s, outbox backlog peaked at %d", len(placed), 30*time.Second, maxBacklog)
	defer func() {
		t.Logf("phases: %s until paid under load, 30s down, %s until an order placed since was paid, %s until every order was paid and the outbox drained",
			down.Sub(began).Round(time.Millisecond), recovered.Sub(back).Round(time.Millisecond), time.Since(recovered).Round(time.Millisecond))
	}()
	if maxBacklog < 100 {
		t.Fatalf("outbox backlog peaked at %d: the broker was not really down (since %s)", maxBacklog, down)
	}
	for _, id := range placed {
		s.WaitStatus(t, id, checkout.StatusPaid, 60*time.Second)
	}
	if got := s.Sandbox.ChargeCount(); got != len(placed) {
		t.Fatalf("%d charges for %d orders", got, len(placed))
	}
	testutil.Eventually(t, 10*time.Second, "the outbox drained", func() bool {
		b, _, _ := outbox.Backlog(context.Background(), s.DB, time.Now())
		return b == 0
	})
}

func TestPaymentProvider_DownOrHanging_BreakerOpens_ChargedOnceAfter(t *testing.T) {
	t.Parallel()
	testutil.Slow(t)
	for _, mode := range []string{"5xx", "hang"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			fake := testutil.NewFakeStripe(t)
			gw, err := stripegw.New(stripegw.Config{SecretKey: "sk_test_fake", APIBase: fake.URL, Timeout: 300 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			var opened atomic.Bool
			var opens atomic.Int32
			m := metrics.New(metrics.Options{Breakers: []string{"payment-stripe"}})
			res := resilience.New(gw, resilience.Options{FailureThreshold: 3, OpenTimeout: 500 * time.Millisecond,
				InitialInterval: 10 * time.Millisecond, MaxInterval: 50 * time.Millisecond, MaxTries: 2,
				OnStateChange: func(name string, from, to gobreaker.State) {
					m.BreakerState(name, to) // as serve wires it
					if to == gobreaker.StateOpen {
						opened.Store(true)
						opens.Add(1)
					}
				}})
			breaker := func() string {
				rec := httptest.NewRecorder()
				m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
				for _, l := range strings.Split(rec.Body.String(), "\n") {
					if strings.HasPrefix(l, `checkout_circuit_breaker_state{name="payment-stripe"}`) {
						return strings.Fields(l)[1]
					}
				}
				return "missing"
			}
			if got := breaker(); got != "0" {
				t.Fatalf("breaker metric before any call: %s, want 0", got)
			}
			fake.SetMode(mode)
			s := testutil.NewStack(t, testutil.StackOptions{Gateway: res})
			s.Product(t, "F", 100, map[string]int{"w": 100})
			var ids []string
			for i := 0; i < 5; i++ {
				ids = append(ids, s.Checkout(t, fmt.Sprint("c", i), "k", "tok_visa", checkout.Line{SKU: "F", Quantity: 1}))
			}
			testutil.Eventually(t, 20*time.Second, "the breaker open", opened.Load)
			if got := breaker(); got != "2" && got != "1" {
				t.Fatalf("breaker metric %s while the provider is down, want 2 (open) or 1 (half-open, probing)", got)
			}
			// The outage outlasts a probe: the breaker lets one through, it fails, and
			// the breaker opens again; the orders wait meanwhile.
			testutil.Eventually(t, 20*time.Second, "the breaker open again after a failed probe", func() bool { return opens.Load() >= 2 })
			for _, id := range ids {
				if o, _ := s.Orders.Order(context.Background(), id); o.Status != checkout.StatusPendingPayment {
					t.Fatalf("order %s while the provider is down", o.Status)
				}
			}
			fake.SetMode("ok")
			for _, id := range ids {
				s.WaitStatus(t, id, checkout.StatusPaid, 30*time.Second)
			}
			if got := fake.Charges(); got != len(ids) {
				t.Fatalf("%d charges for %d orders", got, len(ids))
			}
			testutil.Eventually(t, 10*time.Second, "the breaker metric back to closed", func() bool { return breaker() == "0" })
			t.Logf("%s: %d requests reached the provider for %d orders", mode, len(fake.Requests()), len(ids))
		})
	}
}

func TestRabbitMQ_DownAtStart_ServiceHealsWhenItComes(t *testing.T) {
	t.Parallel()
	testutil.Slow(t)
	proxy := testutil.NewProxy(t, testutil.AMQPHostPort(t))
	proxy.Cut()
	db := testutil.NewDB(t)
	api := testutil.NewAPI(t, db)
	api.Product(t, "F", 100, map[string]int{"w": 10})
	topo := testutil.NewTopology()
	t.Cleanup(func() {
		b := broker.New(testutil.AMQPURL(), topo, nil)
		b.Delete(context.Background())
		b.Close()
	})
	url := "amqp://guest:guest@" + proxy.Addr() + "/"
	pub, sub := broker.New(url, topo, nil), broker.New(url, topo, nil)
	defer pub.Close()
	defer sub.Close()
	if err := pub.Declare(context.Background()); err == nil {
		t.Fatal("declared through a cut proxy")
	}
	sb := sandbox.New()
	pays := store.NewPayments(db.DB, api.Orders)
	t.Cleanup(pays.Close)
	w, _ := workers.NewPaymentWorker(pays, sb, nil, time.Now)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	relay, err := outbox.NewRelay(db.DB, pub, time.Now, outbox.RelayOptions{Batch: 100, Poll: 100 * time.Millisecond, PublishTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	go relay.Run(ctx)
	go w.Run(ctx, sub, broker.ConsumeOptions{})

	id, resp, err := placeVia(api, testutil.Token(t, "c"), "k", 1)
	if err != nil || id == "" {
		t.Fatalf("checkout without a broker: %v %+v", err, resp)
	}
	testutil.Eventually(t, 20*time.Second, "the relay to fail to publish without a broker", func() bool {
		return api.Count(t, "SELECT count(*) FROM outbox WHERE last_error IS NOT NULL") > 0
	})
	proxy.Restore() // the broker arrives: no queue, no exchange declared yet
	testutil.Eventually(t, 20*time.Second, "the order paid", func() bool {
		o, _ := api.Orders.Order(context.Background(), id)
		return o.Status == checkout.StatusPaid
	})
	if sb.ChargeCount() != 1 {
		t.Fatalf("%d charges", sb.ChargeCount())
	}
}
