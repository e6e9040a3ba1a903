package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"cloud.google.com/go/bigquery"
	"github.com/elastic/go-elasticsearch/v8"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/uptrace/bun"
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

// newAnalyticsSink builds the sink ANALYTICS_SINK names.
func newAnalyticsSink(ctx context.Context, cfg config.Config) (analytics.Sink, func(), error) {
	noop := func() {}
	switch cfg.AnalyticsSink {
	case "parquet":
		s, err := parquetsink.New(cfg.AnalyticsDir)
		return s, noop, err
	case "elasticsearch":
		if len(cfg.ElasticsearchURLs) == 0 {
			return nil, noop, errors.New("config: ELASTICSEARCH_URLS is required with ANALYTICS_SINK=elasticsearch")
		}
		es, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: cfg.ElasticsearchURLs, APIKey: cfg.ElasticsearchAPIKey})
		if err != nil {
			return nil, noop, fmt.Errorf("elasticsearch: %w", err)
		}
		s, err := esink.New(es, esink.Options{IndexPrefix: cfg.ElasticsearchIndex})
		return s, noop, err
	case "bigquery":
		if cfg.BigQueryProject == "" {
			return nil, noop, errors.New("config: BIGQUERY_PROJECT is required with ANALYTICS_SINK=bigquery")
		}
		var opts []option.ClientOption
		if cfg.BigQueryEndpoint != "" {
			opts = append(opts, option.WithEndpoint(cfg.BigQueryEndpoint))
		}
		client, err := bigquery.NewClient(ctx, cfg.BigQueryProject, opts...)
		if err != nil {
			return nil, noop, fmt.Errorf("bigquery: %w", err)
		}
		s, err := bqsink.New(cfg.AnalyticsDir, client, cfg.BigQueryDataset)
		return s, func() { client.Close() }, err
	}
	return nil, noop, fmt.Errorf("config: ANALYTICS_SINK must be parquet, elasticsearch, bigquery or off, not %q", cfg.AnalyticsSink)
}

// runAnalytics consumes the analytics queue on a connection of its own until ctx ends.
func runAnalytics(ctx context.Context, cfg config.Config, db *bun.DB, topo broker.Topology, logger *slog.Logger, m *metrics.Metrics) error {
	sink, closeSink, err := newAnalyticsSink(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeSink()
	flushes := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "checkout_analytics_batches_total",
		Help: "Analytics batches written (outcome ok) or given back to the broker (outcome error)."}, []string{"outcome"})
	rows := prometheus.NewCounter(prometheus.CounterOpts{Name: "checkout_analytics_rows_total", Help: "Analytics fact rows written."})
	m.Registry().MustRegister(flushes, rows)
	flushes.WithLabelValues("ok")
	flushes.WithLabelValues("error")
	a, err := analytics.New(sink, analytics.Options{MaxBatch: cfg.AnalyticsBatch, FlushInterval: cfg.AnalyticsFlushInterval,
		Stock: func(ctx context.Context, skus []string) (map[string]int, error) {
			return store.Available(ctx, db, skus)
		}, Logger: logger,
		Observe: func(events, n int, took time.Duration, err error) {
			if err != nil {
				flushes.WithLabelValues("error").Inc()
				return
			}
			flushes.WithLabelValues("ok").Inc()
			rows.Add(float64(n))
		}})
	if err != nil {
		return err
	}
	b := broker.New(cfg.AMQPURL, topo, logger)
	defer b.Close()
	logger.Info("analytics consumer running", "sink", cfg.AnalyticsSink, "dir", cfg.AnalyticsDir)
	return a.Run(ctx, b, broker.ConsumeOptions{Observe: m.Consumer})
}

// shipLogs tees the logger to Loki when LOKI_URL is set, with the drop and ship counts
// on /metrics; stop flushes what is in hand (bounded by SHUTDOWN_TIMEOUT).
func shipLogs(cfg config.Config, logger *slog.Logger, m *metrics.Metrics) (*slog.Logger, func(), error) {
	if cfg.LokiURL == "" {
		return logger, func() {}, nil
	}
	loki, err := clog.NewLoki(clog.LokiOptions{URL: cfg.LokiURL, Tenant: cfg.LokiTenant, Service: "checkout"})
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
		ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		defer cancel()
		loki.Close(ctx)
	}, nil
}
