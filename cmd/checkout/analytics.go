package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	bq "google.golang.org/api/bigquery/v2"
	"google.golang.org/api/option"

	"github.com/checkout-backend/checkout/internal/analytics"
	"github.com/checkout-backend/checkout/internal/analytics/bqsink"
	"github.com/checkout-backend/checkout/internal/analytics/esink"
	"github.com/checkout-backend/checkout/internal/analytics/parquetsink"
	"github.com/checkout-backend/checkout/internal/broker"
	"github.com/checkout-backend/checkout/internal/platform/config"
	clog "github.com/checkout-backend/checkout/internal/platform/log"
	"github.com/checkout-backend/checkout/internal/platform/metrics"
	"github.com/checkout-backend/checkout/internal/platform/telemetry"
	"github.com/checkout-backend/checkout/internal/store"
)

// newAnalyticsSink builds the sink ANALYTICS_SINK names (config.Validate checked it).
func newAnalyticsSink(ctx context.Context, cfg config.Analytics) (analytics.Sink, func(), error) {
	noop := func() {}
	switch cfg.Sink {
	case "elasticsearch":
		es, err := esink.Transport(cfg.ElasticsearchURLs, cfg.ElasticsearchAPIKey, true)
		if err != nil {
			return nil, noop, fmt.Errorf("elasticsearch: %w", err)
		}
		s, err := esink.New(es, esink.Options{IndexPrefix: cfg.ElasticsearchIndex})
		return s, noop, err
	case "bigquery":
		var opts []option.ClientOption
		if cfg.BigQueryEndpoint != "" {
			opts = append(opts, option.WithEndpoint(cfg.BigQueryEndpoint))
		}
		api, err := bq.NewService(ctx, opts...)
		if err != nil {
			return nil, noop, fmt.Errorf("bigquery: %w", err)
		}
		s, err := bqsink.New(cfg.Dir, api, cfg.BigQueryProject, cfg.BigQueryDataset)
		return s, noop, err
	default:
		s, err := parquetsink.New(cfg.Dir)
		return s, noop, err
	}
}

// analyticsPart consumes the analytics queue on a connection of its own, never in the
// saga's way.
type analyticsPart struct {
	closers
	run func(ctx context.Context) error
}

func newAnalyticsPart(ctx context.Context, s *service, st *stores) (_ *analyticsPart, err error) {
	cfg, m := s.cfg.Analytics, s.m
	a := &analyticsPart{}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	sink, closeSink, err := newAnalyticsSink(ctx, cfg)
	if err != nil {
		return nil, err
	}
	a.add(func() error { closeSink(); return nil })
	flushes := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "checkout_analytics_batches_total",
		Help: "Analytics batches written (outcome ok) or given back to the broker (outcome error)."}, []string{"outcome"})
	rows := prometheus.NewCounter(prometheus.CounterOpts{Name: "checkout_analytics_rows_total", Help: "Analytics fact rows written."})
	m.Registry().MustRegister(flushes, rows)
	flushes.WithLabelValues("ok")
	flushes.WithLabelValues("error")
	consumer, err := analytics.New(sink, s.now, analytics.Options{MaxBatch: cfg.Batch, FlushInterval: cfg.FlushInterval,
		Stock: func(ctx context.Context, skus []string) (map[string]int, error) {
			return store.Available(ctx, st.db, skus)
		}, Logger: s.logger,
		Observe: func(events, n int, took time.Duration, err error) {
			if err != nil {
				flushes.WithLabelValues("error").Inc()
				return
			}
			flushes.WithLabelValues("ok").Inc()
			rows.Add(float64(n))
		}})
	if err != nil {
		return nil, err
	}
	b := broker.New(s.cfg.Broker.URL, st.topo, s.logger)
	a.add(b.Close)
	a.run = func(ctx context.Context) error {
		s.logger.Info("analytics consumer running", "sink", cfg.Sink, "dir", cfg.Dir)
		return consumer.Run(ctx, b, broker.ConsumeOptions{Observe: m.Consumer})
	}
	return a, nil
}

// Run consumes until ctx ends.
func (a *analyticsPart) Run(ctx context.Context) error { return a.run(ctx) }

// shipLogs tees the logger to Loki when LOKI_URL is set, with the drop and ship counts
// on /metrics; stop flushes what is in hand (bounded by SHUTDOWN_TIMEOUT).
func shipLogs(cfg config.Config, logger *slog.Logger, m *metrics.Metrics) (*slog.Logger, func(), error) {
	if cfg.Logs.LokiURL == "" {
		return logger, func() {}, nil
	}
	loki, err := clog.NewLoki(clog.LokiOptions{URL: cfg.Logs.LokiURL, Tenant: cfg.Logs.LokiTenant, Service: "checkout"})
	if err != nil {
		return nil, nil, err
	}
	m.Registry().MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "checkout_log_lines_dropped_total",
			Help: "Log lines not shipped to Loki (buffer full, Loki slow, down or refusing)."}, func() float64 { return float64(loki.Dropped()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "checkout_log_lines_shipped_total",
			Help: "Log lines Loki accepted."}, func() float64 { return float64(loki.Shipped()) }))
	go loki.Run(context.Background())
	shipped := slog.New(clog.Tee(logger.Handler(), telemetry.LogHandler(loki.Handler())))
	slog.SetDefault(shipped)
	return shipped, func() {
		ctx, cancel := context.WithTimeout(context.Background(), cfg.HTTP.ShutdownTimeout)
		defer cancel()
		loki.Close(ctx)
	}, nil
}
