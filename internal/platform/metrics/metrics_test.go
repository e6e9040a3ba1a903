package metrics_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/sony/gobreaker"

	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/platform/metrics"
	"github.com/checkout-backend/checkout/internal/platform/metrics/metricstest"
)

func TestMetrics_ContractSeriesExistFromStart(t *testing.T) {
	t.Parallel()
	m := metrics.New(metrics.Options{Breakers: []string{"payment-sandbox"}, Consumers: []string{"payment"}})
	m.OutboxBacklog(func(context.Context) (int, time.Duration, error) { return 3, 90 * time.Second, nil })
	body := metricstest.Scrape(t, m)
	metricstest.WantLines(t, body,
		`checkout_circuit_breaker_state{name="payment-sandbox"} 0`,
		`checkout_outbox_backlog 3`,
		`checkout_outbox_oldest_age_seconds 90`,
		`graphql_request_duration_seconds_count{operation="checkout",outcome="ok"} 0`,
		`checkout_consumer_messages_total{consumer="payment",outcome="dead_letter"} 0`,
		`checkout_consumer_redeliveries_total{consumer="payment"} 0`,
		`# TYPE graphql_request_duration_seconds histogram`,
		`# TYPE checkout_orders_total counter`,
	)
	for _, s := range metrics.Statuses {
		metricstest.WantLines(t, body, fmt.Sprintf(`checkout_orders_total{status=%q} 0`, s))
	}
	for _, o := range metrics.Outcomes {
		metricstest.WantLines(t, body, fmt.Sprintf(`checkout_checkouts_total{outcome=%q} 0`, o))
	}
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total"} {
		if !strings.Contains(body, "\n"+name+" ") {
			t.Errorf("/metrics lacks %s", name)
		}
	}
}

func TestMetrics_BreakerState(t *testing.T) {
	t.Parallel()
	m := metrics.New(metrics.Options{Breakers: []string{"payment-stripe"}})
	for state, want := range map[gobreaker.State]string{gobreaker.StateOpen: "2", gobreaker.StateHalfOpen: "1", gobreaker.StateClosed: "0"} {
		m.BreakerState("payment-stripe", state)
		metricstest.WantLines(t, metricstest.Scrape(t, m), `checkout_circuit_breaker_state{name="payment-stripe"} `+want)
	}
}

func TestMetrics_RecordersShowUp(t *testing.T) {
	t.Parallel()
	m := metrics.New(metrics.Options{})
	m.ObserveGraphQL("checkout", metrics.OutcomeUserError, 30*time.Millisecond)
	m.ObserveGraphQL("", metrics.OutcomeOK, time.Millisecond)
	m.Checkout("placed")
	m.Checkout("placed")
	m.Revenue("usd", 1999)
	m.Revenue("not a currency", 5)
	m.RelayBatch(2, 3*time.Millisecond, []time.Duration{time.Second, 2 * time.Second})
	m.Consumer("refund", "retry", true, 40*time.Millisecond)
	m.Shed("checkout", "busy")
	m.InFlight("read", func() int { return 7 })
	m.Queues(func(context.Context) ([]metrics.QueueDepth, error) {
		return []metrics.QueueDepth{{Queue: "checkout.payment.dlq", Messages: 4}, {Queue: "checkout.payment", Messages: 1, Consumers: 2}}, nil
	})
	db, err := sql.Open("pgx", "postgres://nobody@127.0.0.1:1/none") // lazily: no connection is made
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(9)
	m.DBStats(db, "checkout")
	metricstest.WantLines(t, metricstest.Scrape(t, m),
		`graphql_request_duration_seconds_count{operation="checkout",outcome="user_error"} 1`,
		`graphql_request_duration_seconds_bucket{operation="checkout",outcome="user_error",le="0.05"} 1`,
		`graphql_request_duration_seconds_count{operation="anonymous",outcome="ok"} 1`,
		`checkout_checkouts_total{outcome="placed"} 2`,
		`checkout_revenue_cents_total{currency="USD"} 1999`,
		`checkout_revenue_cents_total{currency="other"} 5`,
		`checkout_outbox_published_total 2`,
		`checkout_outbox_confirm_duration_seconds_count 1`,
		`checkout_outbox_publish_lag_seconds_sum 3`,
		`checkout_consumer_messages_total{consumer="refund",outcome="retry"} 1`,
		`checkout_consumer_processing_duration_seconds_count{consumer="refund",outcome="retry"} 1`,
		`checkout_consumer_redeliveries_total{consumer="refund"} 1`,
		`checkout_overload_rejected_total{class="checkout",reason="busy"} 1`,
		`checkout_bulkhead_in_flight{class="read"} 7`,
		`checkout_rabbitmq_queue_messages{queue="checkout.payment.dlq"} 4`,
		`checkout_rabbitmq_queue_consumers{queue="checkout.payment"} 2`,
		`go_sql_max_open_connections{db_name="checkout"} 9`,
	)
}

func TestMetrics_OperationLabelsAreBounded(t *testing.T) {
	t.Parallel()
	m := metrics.New(metrics.Options{})
	for i := range 1000 {
		m.ObserveGraphQL(fmt.Sprintf("Op%d", i), metrics.OutcomeOK, time.Millisecond)
	}
	n := testutil.CollectAndCount(m.Registry(), "graphql_request_duration_seconds")
	if n > 200+3 {
		t.Fatalf("%d graphql_request_duration_seconds series; want at most 203", n)
	}
	// The pre-created "checkout" holds one of the 200 names.
	metricstest.WantLines(t, metricstest.Scrape(t, m), `graphql_request_duration_seconds_count{operation="other",outcome="ok"} 801`)
}

func TestMetrics_BacklogReadFailureKeepsLastValues(t *testing.T) {
	t.Parallel()
	m := metrics.New(metrics.Options{})
	var fail atomic.Bool
	m.OutboxBacklog(func(ctx context.Context) (int, time.Duration, error) {
		if _, ok := ctx.Deadline(); !ok {
			t.Error("backlog read without a deadline")
		}
		if fail.Load() {
			return 0, 0, errors.New("database down")
		}
		return 12, 5 * time.Second, nil
	})
	metricstest.Scrape(t, m)
	fail.Store(true)
	metricstest.WantLines(t, metricstest.Scrape(t, m),
		`checkout_outbox_backlog 12`,
		`checkout_outbox_oldest_age_seconds 5`,
	)
	// The error counter is gathered alongside, so the next scrape shows it for sure.
	fail.Store(false)
	metricstest.WantLines(t, metricstest.Scrape(t, m), `checkout_metrics_collect_errors_total{collector="outbox"} 1`)
}

func TestMetrics_OrderCommitted_CountsStatusAndRevenue(t *testing.T) {
	t.Parallel()
	m := metrics.New(metrics.Options{})
	m.OrderCommitted(checkout.Order{Status: checkout.StatusPendingPayment, TotalCents: 2500, Currency: "EUR"})
	m.OrderCommitted(checkout.Order{Status: checkout.StatusPaid, TotalCents: 2500, Currency: "EUR"})
	metricstest.WantLines(t, metricstest.Scrape(t, m),
		`checkout_orders_total{status="PENDING_PAYMENT"} 1`,
		`checkout_orders_total{status="PAID"} 1`,
		`checkout_orders_total{status="EXPIRED"} 0`,
		`checkout_revenue_cents_total{currency="EUR"} 2500`,
	)
}

func TestMetrics_HangingReadDoesNotHoldTheScrape(t *testing.T) {
	t.Parallel()
	m := metrics.New(metrics.Options{ScrapeTimeout: 50 * time.Millisecond})
	release := make(chan struct{})
	var calls atomic.Int32
	m.Queues(func(ctx context.Context) ([]metrics.QueueDepth, error) {
		if calls.Add(1) == 1 {
			return []metrics.QueueDepth{{Queue: "checkout.payment.dlq", Messages: 2}}, nil
		}
		<-release // ignores ctx, as a stuck dial would
		return []metrics.QueueDepth{{Queue: "checkout.payment.dlq", Messages: 9}}, nil
	})
	metricstest.Scrape(t, m)
	for range 3 {
		start := time.Now()
		metricstest.WantLines(t, metricstest.Scrape(t, m), `checkout_rabbitmq_queue_messages{queue="checkout.payment.dlq"} 2`)
		if took := time.Since(start); took > time.Second {
			t.Fatalf("scrape took %v", took)
		}
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("%d reads started; a stuck read must not be started again", n)
	}
	close(release)
	metricstest.WantLines(t, metricstest.Scrape(t, m),
		`checkout_rabbitmq_queue_messages{queue="checkout.payment.dlq"} 9`,
		`checkout_metrics_collect_errors_total{collector="rabbitmq"} 3`)
}
