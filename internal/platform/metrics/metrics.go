// Package metrics holds every Prometheus collector of the service in one registry, with
// the label series that dashboards and alerts rely on created at start, and the small
// methods the API, relay, workers and breakers call to record what happens. Handler
// serves the registry on /metrics.
package metrics

import (
	"context"
	"database/sql"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sony/gobreaker"

	"github.com/checkout-backend/checkout/internal/checkout"
)

// Order statuses (checkout_orders_total) and checkout outcomes (checkout_checkouts_total):
// every one has a series from start.
var (
	Statuses = []string{"PENDING_PAYMENT", "PAID", "SHIPPED", "PAYMENT_FAILED", "CANCELLED", "EXPIRED"}
	Outcomes = []string{"placed", "out_of_stock", "idempotent_replay", "rejected", "error"}
	// ConsumerOutcomes are the outcomes broker.ConsumeOptions.Observe reports.
	ConsumerOutcomes = []string{"ack", "retry", "dead_letter", "requeue"}
)

// GraphQL request outcomes.
const (
	OutcomeOK        = "ok"
	OutcomeUserError = "user_error"
	OutcomeError     = "error"
)

// maxOperations bounds the distinct operation label values: operation names are chosen
// by clients, so past this many the rest are counted as "other".
const maxOperations = 200

// Options name what must have a series before its first event.
type Options struct {
	// Breakers are circuit breaker names; each starts at 0 (closed).
	Breakers []string
	// Consumers are broker consumer names; their counters start at 0 for every outcome.
	Consumers []string
	// Operations are GraphQL operation names whose graphql_request_duration_seconds
	// series start empty for every outcome; default ["checkout"].
	Operations []string
	// ScrapeTimeout bounds each read a scrape makes (outbox backlog, queue depths);
	// default 2s.
	ScrapeTimeout time.Duration
}

// Metrics is the service's set of collectors. Its methods are safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	graphql       *prometheus.HistogramVec
	orders        *prometheus.CounterVec
	checkouts     *prometheus.CounterVec
	revenue       *prometheus.CounterVec
	published     prometheus.Counter
	confirm       prometheus.Histogram
	publishLag    prometheus.Histogram
	consumerTime  *prometheus.HistogramVec
	consumerMsgs  *prometheus.CounterVec
	redeliveries  *prometheus.CounterVec
	breaker       *prometheus.GaugeVec
	shed          *prometheus.CounterVec
	sweepFailures prometheus.Counter
	resRetries    prometheus.Counter
	batchSize     prometheus.Histogram
	redisFallback prometheus.Counter
	brokerBlocked prometheus.Gauge
	collectErrors *prometheus.CounterVec

	scrapeTimeout time.Duration

	mu  sync.Mutex
	ops map[string]struct{}
}

// New builds the collectors, registers them with the Go and process collectors in a
// registry of its own, and creates the series named by opt.
func New(opt Options) *Metrics {
	if opt.ScrapeTimeout <= 0 {
		opt.ScrapeTimeout = 2 * time.Second
	}
	m := &Metrics{
		scrapeTimeout: opt.ScrapeTimeout,
		reg:           prometheus.NewRegistry(),
		ops:           map[string]struct{}{},
		graphql: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "graphql_request_duration_seconds",
			Help:    "GraphQL operations (queries and mutations) by operation name and outcome (ok, user_error, error).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"operation", "outcome"}),
		orders: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "checkout_orders_total",
			Help: "Order status changes, by the status entered.",
		}, []string{"status"}),
		checkouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "checkout_checkouts_total",
			Help: "Checkout mutations by outcome (placed, out_of_stock, idempotent_replay, rejected, error).",
		}, []string{"outcome"}),
		revenue: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "checkout_revenue_cents_total",
			Help: "Total of paid orders, in the currency's minor unit.",
		}, []string{"currency"}),
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "checkout_outbox_published_total",
			Help: "Outbox events published to RabbitMQ and confirmed.",
		}),
		confirm: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "checkout_outbox_confirm_duration_seconds",
			Help:    "Time from publishing an outbox batch to the broker confirming all of it.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		publishLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "checkout_outbox_publish_lag_seconds",
			Help:    "Time from an event's commit to the broker's confirmation of it.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}),
		consumerTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "checkout_consumer_processing_duration_seconds",
			Help:    "Time to handle one message, by consumer and outcome.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"consumer", "outcome"}),
		consumerMsgs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "checkout_consumer_messages_total",
			Help: "Messages handled, by consumer and outcome (ack, retry, dead_letter, requeue).",
		}, []string{"consumer", "outcome"}),
		redeliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "checkout_consumer_redeliveries_total",
			Help: "Messages the broker delivered again (a consumer died or gave one back).",
		}, []string{"consumer"}),
		breaker: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "checkout_circuit_breaker_state",
			Help: "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
		}, []string{"name"}),
		shed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "checkout_overload_rejected_total",
			Help: "Requests refused by load shedding, by request class and reason (busy: 503, rate_limited: 429; a body not received whole, class other: body_timeout: 408, body_too_large: 413, body_broken: 400).",
		}, []string{"class", "reason"}),
		sweepFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "checkout_sweeper_failures_total",
			Help: "Expired orders the sweeper could not move to EXPIRED (each is logged and retried next sweep).",
		}),
		resRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "checkout_reservation_retries_total",
			Help: "Optimistic reservations that lost their compare-and-set and tried again.",
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "checkout_reservation_batch_size",
			Help:    "Checkouts placed together in one transaction by the batch strategy.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128},
		}),
		redisFallback: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "checkout_reservation_redis_fallbacks_total",
			Help: "Checkouts of the redis strategy placed with row locks because Redis did not answer.",
		}),
		brokerBlocked: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "checkout_broker_blocked",
			Help: "1 while RabbitMQ blocks this process's publishing connection (a resource alarm), else 0.",
		}),
		collectErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "checkout_metrics_collect_errors_total",
			Help: "Failed reads behind scrape-time gauges (the last values are reported meanwhile).",
		}, []string{"collector"}),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.graphql, m.orders, m.checkouts, m.revenue, m.published, m.confirm, m.publishLag,
		m.consumerTime, m.consumerMsgs, m.redeliveries, m.breaker, m.shed, m.sweepFailures, m.resRetries, m.batchSize, m.redisFallback, m.brokerBlocked, m.collectErrors,
	)
	if opt.Operations == nil {
		opt.Operations = []string{"checkout"}
	}
	for _, op := range opt.Operations {
		for _, o := range []string{OutcomeOK, OutcomeUserError, OutcomeError} {
			m.graphql.WithLabelValues(m.operation(op), o)
		}
	}
	for _, s := range Statuses {
		m.orders.WithLabelValues(s)
	}
	for _, o := range Outcomes {
		m.checkouts.WithLabelValues(o)
	}
	for _, b := range opt.Breakers {
		m.breaker.WithLabelValues(b).Set(0)
	}
	for _, c := range opt.Consumers {
		m.AddConsumer(c)
	}
	return m
}

// Registry is the registry behind Handler, for extra collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus text (or OpenMetrics) format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg, ErrorHandling: promhttp.ContinueOnError})
}

// ObserveGraphQL records one GraphQL operation.
func (m *Metrics) ObserveGraphQL(operation, outcome string, d time.Duration) {
	m.graphql.WithLabelValues(m.operation(operation), outcome).Observe(d.Seconds())
}

func (m *Metrics) operation(name string) string {
	if name == "" {
		return "anonymous"
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.ops[name]; ok {
		return name
	}
	if len(m.ops) >= maxOperations || len(name) > 100 {
		return "other"
	}
	m.ops[name] = struct{}{}
	return name
}

// OrderStatus counts an order entering status.
func (m *Metrics) OrderStatus(status string) { m.orders.WithLabelValues(status).Inc() }

// OrderCommitted counts an order change that committed: its new status, and its total
// when it was paid. It has the shape of store.OrdersOptions.OnCommit.
func (m *Metrics) OrderCommitted(o checkout.Order) {
	m.OrderStatus(string(o.Status))
	if o.Status == checkout.StatusPaid {
		m.Revenue(o.Currency, o.TotalCents)
	}
}

// SweepFailed counts an order the sweeper could not expire; it has the shape of
// workers.SweeperOptions.OnFailure.
func (m *Metrics) SweepFailed(string, error) { m.sweepFailures.Inc() }

// ReservationRetry counts a lost optimistic compare-and-set.
func (m *Metrics) ReservationRetry() { m.resRetries.Inc() }

// ReservationBatch records the size of a batch of checkouts placed together.
func (m *Metrics) ReservationBatch(n int) { m.batchSize.Observe(float64(n)) }

// BrokerBlocked records whether RabbitMQ blocks publishing; it has the shape of
// broker.Broker.OnBlocked.
func (m *Metrics) BrokerBlocked(blocked bool) {
	if blocked {
		m.brokerBlocked.Set(1)
	} else {
		m.brokerBlocked.Set(0)
	}
}

// RedisFallback counts a checkout placed with row locks because Redis did not answer.
func (m *Metrics) RedisFallback(error) { m.redisFallback.Inc() }

// Checkout counts a checkout mutation by outcome (placed, out_of_stock,
// idempotent_replay, rejected, error); it has the shape of graph.Resolver.ObserveCheckout.
func (m *Metrics) Checkout(outcome string) { m.checkouts.WithLabelValues(outcome).Inc() }

// Revenue adds a paid order's total.
func (m *Metrics) Revenue(currency string, cents int64) {
	if cents <= 0 {
		return
	}
	m.revenue.WithLabelValues(currencyLabel(currency)).Add(float64(cents))
}

// currencyLabel keeps the label to ISO 4217 shaped codes.
func currencyLabel(c string) string {
	c = strings.ToUpper(c)
	if len(c) != 3 || strings.Trim(c, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != "" {
		return "other"
	}
	return c
}

// RelayBatch records a published outbox batch; it has the shape of
// outbox.RelayOptions.Observe.
func (m *Metrics) RelayBatch(n int, confirm time.Duration, lags []time.Duration) {
	m.published.Add(float64(n))
	m.confirm.Observe(confirm.Seconds())
	for _, l := range lags {
		m.publishLag.Observe(l.Seconds())
	}
}

// AddConsumer creates a consumer's series (every outcome at 0).
func (m *Metrics) AddConsumer(consumer string) {
	for _, o := range ConsumerOutcomes {
		m.consumerMsgs.WithLabelValues(consumer, o)
	}
	m.redeliveries.WithLabelValues(consumer)
}

// Consumer records one handled message; it has the shape of
// broker.ConsumeOptions.Observe.
func (m *Metrics) Consumer(consumer, outcome string, redelivered bool, took time.Duration) {
	m.consumerMsgs.WithLabelValues(consumer, outcome).Inc()
	m.consumerTime.WithLabelValues(consumer, outcome).Observe(took.Seconds())
	if redelivered {
		m.redeliveries.WithLabelValues(consumer).Inc()
	}
}

// BreakerState sets a breaker's state (0 closed, 1 half-open, 2 open). Call it once
// with the breaker's current state at start, then from its OnStateChange.
func (m *Metrics) BreakerState(name string, state gobreaker.State) {
	v := 0.0
	switch state {
	case gobreaker.StateHalfOpen:
		v = 1
	case gobreaker.StateOpen:
		v = 2
	}
	m.breaker.WithLabelValues(name).Set(v)
}

// Shed counts a request refused by load shedding; reason is "busy" or "rate_limited".
func (m *Metrics) Shed(class, reason string) { m.shed.WithLabelValues(class, reason).Inc() }

// InFlight exports a bulkhead's requests in progress as checkout_bulkhead_in_flight.
func (m *Metrics) InFlight(class string, fn func() int) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "checkout_bulkhead_in_flight",
		Help:        "Requests being served, by bulkhead class.",
		ConstLabels: prometheus.Labels{"class": class},
	}, func() float64 { return float64(fn()) }))
}

// DBStats exports the pool figures of db (open, in use, idle, waits, wait time) as the
// go_sql_* series with db_name=name.
func (m *Metrics) DBStats(db *sql.DB, name string) {
	m.reg.MustRegister(collectors.NewDBStatsCollector(db, name))
}

// OutboxBacklog exports checkout_outbox_backlog and checkout_outbox_oldest_age_seconds,
// read with fn (outbox.Backlog) at each scrape. When a read fails or outlasts
// Options.ScrapeTimeout the last values are reported and
// checkout_metrics_collect_errors_total{collector="outbox"} goes up.
func (m *Metrics) OutboxBacklog(fn func(ctx context.Context) (int, time.Duration, error)) {
	m.reg.MustRegister(&backlogCollector{r: newReader(m, "outbox", func(ctx context.Context) (backlog, error) {
		n, oldest, err := fn(ctx)
		return backlog{n, oldest}, err
	})})
}

type backlog struct {
	n      int
	oldest time.Duration
}

var (
	backlogDesc = prometheus.NewDesc("checkout_outbox_backlog", "Outbox rows not yet published.", nil, nil)
	oldestDesc  = prometheus.NewDesc("checkout_outbox_oldest_age_seconds", "Age of the oldest unpublished outbox row (0 when none).", nil, nil)
)

type backlogCollector struct{ r *reader[backlog] }

func (c *backlogCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- backlogDesc
	ch <- oldestDesc
}

func (c *backlogCollector) Collect(ch chan<- prometheus.Metric) {
	b := c.r.read()
	ch <- prometheus.MustNewConstMetric(backlogDesc, prometheus.GaugeValue, float64(b.n))
	ch <- prometheus.MustNewConstMetric(oldestDesc, prometheus.GaugeValue, b.oldest.Seconds())
}

// QueueDepth is one queue's figures as RabbitMQ reports them (a passive declare).
type QueueDepth struct {
	Queue     string
	Messages  int
	Consumers int
}

// Queues exports checkout_rabbitmq_queue_messages and checkout_rabbitmq_queue_consumers
// per queue, read with fn at each scrape. When a read fails or outlasts
// Options.ScrapeTimeout the last values are reported and
// checkout_metrics_collect_errors_total{collector="rabbitmq"} goes up.
func (m *Metrics) Queues(fn func(ctx context.Context) ([]QueueDepth, error)) {
	m.reg.MustRegister(&queueCollector{r: newReader(m, "rabbitmq", fn)})
}

var (
	queueMsgsDesc = prometheus.NewDesc("checkout_rabbitmq_queue_messages", "Messages ready in a RabbitMQ queue.", []string{"queue"}, nil)
	queueConsDesc = prometheus.NewDesc("checkout_rabbitmq_queue_consumers", "Consumers attached to a RabbitMQ queue.", []string{"queue"}, nil)
)

type queueCollector struct{ r *reader[[]QueueDepth] }

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- queueMsgsDesc
	ch <- queueConsDesc
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	for _, q := range c.r.read() {
		ch <- prometheus.MustNewConstMetric(queueMsgsDesc, prometheus.GaugeValue, float64(q.Messages), q.Queue)
		ch <- prometheus.MustNewConstMetric(queueConsDesc, prometheus.GaugeValue, float64(q.Consumers), q.Queue)
	}
}

// reader runs a scrape-time read with a deadline. A scrape never waits longer than the
// timeout, even on a read that ignores its context; such a read is left to finish (at
// most one at a time) and the next scrape takes its result.
type reader[T any] struct {
	fn      func(context.Context) (T, error)
	timeout time.Duration
	errs    prometheus.Counter

	mu   sync.Mutex
	last T
	done chan result[T] // the read in progress, or nil
}

type result[T any] struct {
	v   T
	err error
}

func newReader[T any](m *Metrics, name string, fn func(context.Context) (T, error)) *reader[T] {
	return &reader[T]{fn: fn, timeout: m.scrapeTimeout, errs: m.collectErrors.WithLabelValues(name)}
}

func (r *reader[T]) read() T {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done == nil {
		done := make(chan result[T], 1)
		r.done = done
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
			defer cancel()
			v, err := r.fn(ctx)
			done <- result[T]{v, err}
		}()
	}
	t := time.NewTimer(r.timeout)
	defer t.Stop()
	select {
	case res := <-r.done:
		r.done = nil
		if res.err != nil {
			r.errs.Inc()
		} else {
			r.last = res.v
		}
	case <-t.C:
		r.errs.Inc()
	}
	return r.last
}
