package systest

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/platform/httpx"
	"github.com/checkout-backend/checkout/internal/store"
	"github.com/checkout-backend/checkout/internal/testutil"
	"github.com/checkout-backend/checkout/outbox"
)

// RabbitMQ stalls (connections open, nothing answers) while the relay publishes: each
// batch's publish ends at its deadline and releases its rows (no transaction or lock
// held), readiness answers within its limit, and once RabbitMQ answers again every
// order is paid, charged once.
func TestRabbitMQ_StalledWhileRelayPublishes_DeadlinesHold_NothingLost(t *testing.T) {
	t.Parallel()
	testutil.Slow(t)
	proxy := testutil.NewProxy(t, testutil.AMQPHostPort(t))
	const deadline = time.Second
	s := testutil.NewStack(t, testutil.StackOptions{AMQPURL: "amqp://guest:guest@" + proxy.Addr() + "/",
		Relay: outbox.RelayOptions{PublishTimeout: deadline, Lease: 3 * deadline}})
	s.Product(t, "ST", 100, map[string]int{"w": 100})
	warm := s.Checkout(t, "c", "warm", "tok_visa", line("ST", 1))
	s.WaitStatus(t, warm, checkout.StatusPaid, 10*time.Second)
	testutil.Eventually(t, 10*time.Second, "the warm-up published", func() bool {
		n, _, _ := outbox.Backlog(context.Background(), s.DB, time.Now())
		return n == 0
	})

	proxy.Stall()
	mux := http.NewServeMux()
	httpx.Health(mux, httpx.Check{Name: "database", Fn: func(ctx context.Context) error { return store.Ping(ctx, s.DB.DB.DB) }},
		httpx.Check{Name: "broker", Fn: s.Broker.Ping})
	var ids []string
	for i := 0; i < 10; i++ {
		ids = append(ids, s.Checkout(t, fmt.Sprint("c", i), "k", "tok_visa", line("ST", 1)))
	}
	// The relay's publish of the stalled batch ends at its deadline: the rows are
	// released with the error, not held.
	start := time.Now()
	testutil.Eventually(t, 5*deadline, "a stalled publish released at its deadline", func() bool {
		return s.Count(t, "SELECT count(*) FROM outbox WHERE published_at IS NULL AND last_error IS NOT NULL") > 0
	})
	t.Logf("first stalled batch released after %s (deadline %s)", time.Since(start).Round(time.Millisecond), deadline)
	if n := s.Count(t, `SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction' AND query LIKE '%outbox%'
			AND application_name = current_setting('application_name')`); n != 0 {
		t.Fatalf("%d transactions held open on the outbox while the broker stalls", n)
	}
	rec := httptest.NewRecorder()
	t0 := time.Now()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if took := time.Since(t0); took > 3*time.Second {
		t.Fatalf("/readyz took %s with the broker stalled, want an answer within its 2s limit", took)
	}

	proxy.Unstall()
	for _, id := range ids {
		s.WaitStatus(t, id, checkout.StatusPaid, 60*time.Second)
	}
	if got := s.Sandbox.ChargeCount(); got != 11 {
		t.Fatalf("%d charges, want 11 (one per order)", got)
	}
	testutil.Eventually(t, 30*time.Second, "the outbox drained", func() bool {
		n, _, _ := outbox.Backlog(context.Background(), s.DB, time.Now())
		return n == 0
	})
}
