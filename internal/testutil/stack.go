package testutil

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/checkout-backend/checkout/internal/broker"
	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/payment"
	"github.com/checkout-backend/checkout/internal/payment/resilience"
	"github.com/checkout-backend/checkout/internal/payment/sandbox"
	clog "github.com/checkout-backend/checkout/internal/platform/log"
	"github.com/checkout-backend/checkout/internal/store"
	"github.com/checkout-backend/checkout/internal/webhook"
	"github.com/checkout-backend/checkout/outbox"
	"github.com/checkout-backend/checkout/workers"
)

// AMQPURL is the RabbitMQ tests use.
func AMQPURL() string {
	if u := os.Getenv("AMQP_URL"); u != "" {
		return u
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}

// AMQPHostPort is host:port of AMQPURL (for proxies).
func AMQPHostPort(t testing.TB) string {
	u, err := url.Parse(AMQPURL())
	if err != nil {
		t.Fatal(err)
	}
	if u.Port() == "" {
		return u.Hostname() + ":5672"
	}
	return u.Host
}

// AMQPChannel is a channel on a connection of the test's own to AMQPURL (to look at or
// act on the broker beside the code under test); both close when the test ends.
func AMQPChannel(t testing.TB) *amqp.Channel {
	t.Helper()
	conn, err := amqp.Dial(AMQPURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// TestRetryDelays keep retries quick in tests.
var TestRetryDelays = []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond}

// NewTopology returns a topology with a prefix of its own, with the saga's consumers
// and any extra ones.
func NewTopology(extra ...broker.Consumer) broker.Topology {
	return broker.Topology{Prefix: "t" + RandomID(4) + ".", Consumers: append(append([]broker.Consumer{}, workers.Consumers...), extra...), RetryDelays: TestRetryDelays}
}

// NewBroker connects to url with topo, declares it, and deletes it at cleanup.
func NewBroker(t testing.TB, url string, topo broker.Topology) *broker.Broker {
	t.Helper()
	return newBroker(t, url, topo, AMQPURL())
}

// newBroker is NewBroker deleting the topology through cleanupURL at cleanup ("" leaves
// it: a private node that goes with the test).
func newBroker(t testing.TB, url string, topo broker.Topology, cleanupURL string) *broker.Broker {
	t.Helper()
	b := broker.New(url, topo, clog.New(testWriter{t}, 0))
	if err := b.Declare(context.Background()); err != nil {
		t.Fatalf("testutil: RabbitMQ is not reachable at AMQP_URL (%s) or refused the topology: %v; run `make test`, which starts it", url, err)
	}
	t.Cleanup(func() {
		if cleanupURL != "" {
			cleanup := broker.New(cleanupURL, topo, nil)
			cleanup.Delete(context.Background())
			cleanup.Close()
		}
		b.Close()
	})
	return b
}

// StackOptions tune NewStack.
type StackOptions struct {
	TTL time.Duration
	// Strategy is the API's reservation strategy (default lock).
	Strategy      store.Strategy
	Gateway       payment.Gateway // default: a sandbox
	AMQPURL       string          // default AMQPURL(); a proxy address to cut the broker
	NoRelay       bool
	NoWorkers     bool
	NoSweeper     bool
	SweepInterval time.Duration
	Relay         outbox.RelayOptions
	Extra         []broker.Consumer
	// Tracing wires the trace hooks as serve does: SQL spans, publish spans with the
	// outbox row's trace context, and payment spans.
	Tracing bool
	// Webhooks runs the partner webhook consumers (retries from 50ms).
	Webhooks        bool
	WebhookDelivery store.DeliveryPolicy
	// Now is the partner webhooks' clock, their store's and delivery loop's (default
	// time.Now: a test's setting, defaulted here; the components take no nil clock).
	Now func() time.Time
	// OnCommit, when set, is told every committed order change (metrics).
	OnCommit func(checkout.Order)
	// DatabaseURL is the server the stack's schema is made on (default
	// TEST_DATABASE_URL), e.g. private nodes listed with target_session_attrs=read-write.
	DatabaseURL string
	// PrivateBroker says AMQPURL is a private node or cluster that goes with the test:
	// the topology is not deleted from the shared broker at cleanup.
	PrivateBroker bool
}

// Stack is the whole service in one test: API, relay, saga workers and sweeper, over a
// database and a broker topology of its own.
type Stack struct {
	*API
	Topology broker.Topology
	Broker   *broker.Broker
	Gateway  payment.Gateway
	Sandbox  *sandbox.Gateway
	Payments *store.Payments
	Workers  *workers.PaymentWorker
	Sweeper  *workers.Sweeper
	// WebhookStore is the partner webhooks' store.
	WebhookStore *store.Webhooks
	ctx          context.Context
	wg           sync.WaitGroup
	ttl          time.Duration
}

// NewStack starts the stack; it stops at cleanup.
func NewStack(t testing.TB, opt StackOptions) *Stack {
	t.Helper()
	if opt.TTL == 0 {
		opt.TTL = 10 * time.Minute
	}
	if opt.AMQPURL == "" {
		opt.AMQPURL = AMQPURL()
	}
	dbOpt := store.Options{MaxOpenConns: 12}
	if opt.Tracing {
		dbOpt.QueryHook = store.TraceHook("checkout")
	}
	if opt.DatabaseURL == "" {
		opt.DatabaseURL = DatabaseURL()
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	db := NewDBOn(t, opt.DatabaseURL, dbOpt)
	extra := opt.Extra
	if opt.Webhooks {
		if opt.WebhookDelivery.Retry.MaxAge == 0 {
			opt.WebhookDelivery.Retry.MaxAge = time.Minute
		}
		if opt.WebhookDelivery.Retry.Base == 0 {
			opt.WebhookDelivery.Retry.Base = 50 * time.Millisecond
		}
		extra = append(extra, workers.WebhookConsumers()...)
	}
	notifier := outbox.NewNotifier(db.DB)
	hooks := store.NewWebhooks(db.DB, opt.Now)
	s := &Stack{API: NewAPI(t, db, APIOptions{TTL: opt.TTL, OnCommit: opt.OnCommit, Notify: notifier.Notify, Strategy: opt.Strategy, Webhooks: hooks}),
		Topology: NewTopology(extra...), ttl: opt.TTL, WebhookStore: hooks}
	if opt.Webhooks {
		// As serve does: the fan-out's queue takes only what endpoints want, bound
		// before an endpoint is stored (BindWith, below).
		s.Topology.Demand = hooks.Demand
	}
	cleanupURL := AMQPURL()
	if opt.PrivateBroker {
		cleanupURL = ""
	}
	s.Broker = newBroker(t, opt.AMQPURL, s.Topology, cleanupURL)
	if opt.Webhooks {
		hooks.BindWith(workers.FanOutBinder(s.Broker))
	}
	s.Gateway = opt.Gateway
	if s.Gateway == nil {
		s.Sandbox = sandbox.New()
		s.Gateway = s.Sandbox
	}
	if opt.Tracing {
		s.Gateway = resilience.Traced(s.Gateway)
	}
	s.Payments = store.NewPayments(db.DB, s.Orders)
	t.Cleanup(s.Payments.Close)
	logger := clog.New(testWriter{t}, 0)
	var err error
	s.Workers, err = workers.NewPaymentWorker(s.Payments, s.Gateway, logger, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.ctx = ctx
	t.Cleanup(func() { cancel(); s.wg.Wait() })
	if !opt.NoRelay {
		if opt.Relay.Batch == 0 {
			opt.Relay.Batch = 100
		}
		if opt.Relay.Poll == 0 {
			opt.Relay.Poll = 100 * time.Millisecond
		}
		opt.Relay.Logger = logger
		var pub outbox.Publisher = s.Broker
		if opt.Tracing {
			pub = broker.TracePublisher(s.Broker)
		}
		if opt.Relay.PublishTimeout == 0 {
			opt.Relay.PublishTimeout = 5 * time.Second
		}
		if opt.Relay.Notifier == nil {
			opt.Relay.Notifier = notifier
		}
		relay, err := outbox.NewRelay(db.DB, pub, time.Now, opt.Relay)
		if err != nil {
			t.Fatal(err)
		}
		s.Go(relay.Run)
	}
	if !opt.NoWorkers {
		sub := broker.New(opt.AMQPURL, s.Topology, logger)
		t.Cleanup(func() { sub.Close() })
		s.Go(func(ctx context.Context) error {
			return s.Workers.Run(ctx, sub, broker.ConsumeOptions{Prefetch: 16, Concurrency: 8, Retry: outbox.Scheduler(db.DB, time.Now)})
		})
	}
	if opt.Webhooks {
		wh := workers.NewWebhooks(s.WebhookStore, opt.Now, workers.WebhookOptions{Policy: webhook.Policy{AllowPrivate: true},
			Delivery: opt.WebhookDelivery, Timeout: 2 * time.Second, Poll: 20 * time.Millisecond, Logger: logger})
		sub := broker.New(opt.AMQPURL, s.Topology, logger)
		t.Cleanup(func() { sub.Close() })
		s.Go(func(ctx context.Context) error {
			return wh.Run(ctx, sub, broker.ConsumeOptions{Prefetch: 16, Concurrency: 8})
		})
	}
	if opt.SweepInterval == 0 {
		opt.SweepInterval = 100 * time.Millisecond
	}
	s.Sweeper = workers.NewSweeper(s.Orders, store.NewMaintenance(db.DB, time.Now), time.Now, workers.SweeperOptions{Interval: opt.SweepInterval, Logger: logger})
	if !opt.NoSweeper {
		s.Go(s.Sweeper.Run)
	}
	return s
}

// Go runs fn until the stack stops.
func (s *Stack) Go(fn func(ctx context.Context) error) {
	s.wg.Add(1)
	go func() { defer s.wg.Done(); fn(s.ctx) }()
}

// WaitStatus waits until the order has status, or fails the test after timeout.
func (s *Stack) WaitStatus(t testing.TB, orderID string, status checkout.Status, timeout time.Duration) *checkout.Order {
	t.Helper()
	var last *checkout.Order
	Eventually(t, timeout, "order "+orderID+" to reach "+string(status), func() bool {
		o, err := s.Orders.Order(context.Background(), orderID)
		if err != nil {
			t.Fatal(err)
		}
		last = o
		return o != nil && o.Status == status
	})
	return last
}

// Checkout places an order of items through the checkout service and returns its id,
// failing the test otherwise. From the test's goroutine only: other goroutines call Place.
func (s *Stack) Checkout(t testing.TB, customer, key, token string, lines ...checkout.Line) string {
	t.Helper()
	id, err := s.Place(customer, key, token, lines...)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// Place is Checkout returning an error instead of failing the test: safe from any
// goroutine.
func (s *Stack) Place(customer, key, token string, lines ...checkout.Line) (string, error) {
	o, _, err := s.Service.Checkout(context.Background(), checkout.Actor{CustomerID: customer},
		checkout.CheckoutInput{IdempotencyKey: key, PaymentToken: token, Items: lines})
	if err != nil {
		return "", fmt.Errorf("checkout: %w", err)
	}
	return o.ID, nil
}
