package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/99designs/gqlgen/graphql/playground"
	"github.com/google/uuid"
	"github.com/sony/gobreaker"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/checkout-backend/checkout/graph"
	"github.com/checkout-backend/checkout/internal/broker"
	"github.com/checkout-backend/checkout/internal/catalog"
	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/feed"
	"github.com/checkout-backend/checkout/internal/payment"
	"github.com/checkout-backend/checkout/internal/payment/sandbox"
	stripegw "github.com/checkout-backend/checkout/internal/payment/stripe"
	"github.com/checkout-backend/checkout/internal/platform/auth"
	"github.com/checkout-backend/checkout/internal/platform/config"
	"github.com/checkout-backend/checkout/internal/platform/gqlhttp"
	"github.com/checkout-backend/checkout/internal/platform/httpx"
	"github.com/checkout-backend/checkout/internal/platform/metrics"
	"github.com/checkout-backend/checkout/internal/platform/overload"
	"github.com/checkout-backend/checkout/internal/platform/telemetry"
	"github.com/checkout-backend/checkout/internal/store"
	"github.com/checkout-backend/checkout/internal/webhook"
	"github.com/checkout-backend/checkout/outbox"
	"github.com/checkout-backend/checkout/workers"
)

// runServe runs the parts the mode asks for: serve = API + relay + workers + sweeper
// (each can be turned off), relay = the outbox relay alone, worker = consumers and sweeper.
func runServe(ctx context.Context, logger *slog.Logger, mode string, args []string) error {
	fs := flag.NewFlagSet(mode, flag.ContinueOnError)
	migrate := fs.Bool("migrate", false, "apply migrations before starting")
	noRelay := fs.Bool("no-relay", false, "serve: do not run the outbox relay in this process")
	noWorkers := fs.Bool("no-workers", false, "serve: do not run the workers and sweeper in this process")
	if err := fs.Parse(args); err != nil {
		return err
	}
	runAPI, runRelay, runWorkers := mode == "serve", mode == "relay" || (mode == "serve" && !*noRelay), mode == "worker" || (mode == "serve" && !*noWorkers)

	cfg, err := config.Load()
	if err != nil {
		return err
	}
	// Tracing first: the SQL hook and otelhttp take their tracer when they are built.
	stopTracing, err := telemetry.Setup(ctx, "checkout")
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		stopTracing(sctx)
	}()
	outbox.SetHeaderInjector(telemetry.InjectMap)
	db, err := store.Open(ctx, cfg.DatabaseURL, store.Options{MaxOpenConns: cfg.DBMaxConns, QueryHook: telemetry.QueryHook("checkout")})
	if err != nil {
		return err
	}
	defer db.Close()
	if *migrate {
		if err := store.Migrate(ctx, db); err != nil {
			return err
		}
	}
	consumers := append(append([]broker.Consumer{}, workers.Consumers...), workers.WebhookConsumers(cfg.WebhookBackoffBase, cfg.WebhookMaxAge)...)
	topo := broker.Topology{Prefix: cfg.AMQPPrefix, Consumers: consumers, RetryDelays: cfg.RetryDelays, QuorumSize: cfg.AMQPQuorumSize}
	consumerNames := make([]string, len(consumers))
	for i, c := range consumers {
		consumerNames[i] = c.Name
	}
	m := metrics.New(metrics.Options{Breakers: []string{"payment-" + gatewayName(cfg)}, Consumers: consumerNames})
	m.DBStats(db.DB, "background")
	m.OutboxBacklog(func(ctx context.Context) (int, time.Duration, error) { return outbox.Backlog(ctx, db) })
	webhookPolicy := webhook.Policy{AllowPrivate: cfg.WebhookAllowPrivate}
	webhookStore := store.NewWebhooks(db)
	// Publishing and consuming get their own connections, as RabbitMQ advises.
	pubBroker := broker.New(cfg.AMQPURL, topo, logger)
	defer pubBroker.Close()
	if err := pubBroker.Declare(ctx); err != nil {
		// The API still takes orders (the outbox holds them); the relay retries.
		logger.Warn("RabbitMQ unavailable at start; the outbox will hold events until it is back", "error", err)
	}
	m.Queues(func(ctx context.Context) ([]metrics.QueueDepth, error) {
		stats, err := pubBroker.QueueStats(ctx)
		out := make([]metrics.QueueDepth, len(stats))
		for i, s := range stats {
			out[i] = metrics.QueueDepth(s)
		}
		return out, err
	})
	orders := store.NewOrders(db, store.LockingReserver{}, time.Now)
	g, ctx := errgroup.WithContext(ctx)

	if runRelay {
		relay := outbox.NewRelay(db, telemetry.TracePublisher(m.CountPublished(pubBroker)), outbox.RelayOptions{Batch: cfg.OutboxBatch,
			Poll: cfg.OutboxPoll, Retention: cfg.OutboxRetention, Logger: logger, Observe: m.RelayBatch})
		g.Go(func() error { return relay.Run(ctx) })
	}
	var payments *store.Payments
	if runWorkers || runAPI {
		payments = store.NewPayments(db, orders)
	}
	if runWorkers {
		gw, err := newGateway(cfg, logger, m)
		if err != nil {
			return err
		}
		w, err := workers.NewPayments(orders, payments, gw, logger, time.Now)
		if err != nil {
			return err
		}
		subBroker := broker.New(cfg.AMQPURL, topo, logger)
		defer subBroker.Close()
		opt := broker.ConsumeOptions{Prefetch: cfg.WorkerPrefetch, Concurrency: cfg.WorkerConcurrency, Observe: m.Consumer}
		g.Go(func() error { return w.Run(ctx, subBroker, opt) })
		hooks := workers.NewWebhooks(webhookStore, workers.WebhookOptions{Policy: webhookPolicy, Logger: logger,
			Delivery: store.DeliveryPolicy{MaxAge: cfg.WebhookMaxAge, DisableAfter: cfg.WebhookDisableAfter}})
		g.Go(func() error {
			return hooks.Run(ctx, subBroker, broker.ConsumeOptions{Prefetch: 32, Concurrency: 32, Observe: m.Consumer})
		})
		sweeper := workers.NewSweeper(db, orders, cfg.SweepInterval, logger, time.Now)
		sweeper.Retention = cfg.KeyRetention
		g.Go(func() error { return sweeper.Run(ctx) })
	}

	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	httpx.Health(mux,
		httpx.Check{Name: "database", Fn: func(ctx context.Context) error { return store.Ping(ctx, db.DB) }},
		httpx.Check{Name: "broker", Fn: pubBroker.Ping})
	if runAPI {
		// Separate pools: a checkout rush cannot take the catalog's connections, nor the
		// relay's and workers'.
		checkoutDB, err := store.Open(ctx, cfg.DatabaseURL, store.Options{MaxOpenConns: cfg.DBCheckoutConns, QueryHook: telemetry.QueryHook("checkout")})
		if err != nil {
			return err
		}
		defer checkoutDB.Close()
		// --- high availability: catalog reads from a replica (DATABASE_READ_URL) ---
		readURL := cfg.DatabaseURL
		if cfg.DatabaseReadURL != "" {
			readURL = cfg.DatabaseReadURL
		}
		readDB, err := store.Open(ctx, readURL, store.Options{MaxOpenConns: cfg.DBReadConns, QueryHook: telemetry.QueryHook("checkout")})
		if err != nil {
			return err
		}
		defer readDB.Close()
		var catalogStore catalog.Store = store.NewCatalog(readDB)
		if cfg.DatabaseReadURL != "" {
			// Catalog writes (admin mutations) go to the primary; reads may lag.
			catalogStore = catalog.ReadSplit{Writer: store.NewCatalog(checkoutDB), Reader: catalogStore}
		}
		// --- end high availability ---
		m.DBStats(checkoutDB.DB, "checkout-api")
		m.DBStats(readDB.DB, "catalog-read")
		apiOrders := store.NewOrders(checkoutDB, store.LockingReserver{}, time.Now)
		svc, err := checkout.NewService(apiOrders, store.NewCarts(checkoutDB), cfg.ReservationTTL, time.Now)
		if err != nil {
			return err
		}
		verifier := auth.NewVerifier(cfg.JWTSecret)
		feedBroker := broker.New(cfg.AMQPURL, topo, logger)
		defer feedBroker.Close()
		statusFeed := feed.New(feedBroker, orders, 16, logger)
		g.Go(func() error { return statusFeed.Run(ctx) })
		res := &graph.Resolver{ObserveCheckout: m.Checkout, Service: svc, Catalog: catalogStore, Orders: apiOrders, Feed: statusFeed,
			WebhookService: webhook.NewService(webhookStore, webhookPolicy, func() string { return uuid.Must(uuid.NewV7()).String() })}
		gqlOpt, closeGQL, err := gqlhttp.FromConfig(ctx, cfg, logger)
		if err != nil {
			return err
		}
		defer closeGQL()
		shed := overload.New(overload.Options{
			Limits: map[overload.Class]int{overload.Checkout: cfg.CheckoutConcurrency,
				overload.Read: cfg.ReadConcurrency, overload.Other: cfg.OtherConcurrency},
			MaxWait:  cfg.OverloadMaxWait,
			Rate:     rate.Limit(cfg.ClientRate),
			Burst:    cfg.ClientBurst,
			Classify: overload.GraphQL(gqlOpt.Persisted.Manifest.Document),
			OnReject: func(c overload.Class, status int) {
				reason := "busy"
				if status == http.StatusTooManyRequests {
					reason = "rate_limited"
				}
				m.Shed(string(c), reason)
			},
		})
		for _, c := range []overload.Class{overload.Checkout, overload.Read, overload.Other} {
			m.InFlight(string(c), func() int { return shed.InFlight(c) })
		}
		mux.Handle("/graphql", graph.Handler(res, graph.HandlerOptions{Logger: logger, Verifier: verifier, Introspection: gqlhttp.IntrospectionEnabled(cfg), HTTP: gqlOpt,
			Metrics: m, Overload: shed.Middleware}))
		if !cfg.Production() {
			mux.Handle("GET /{$}", playground.Handler("Checkout GraphQL", "/graphql"))
		}
		mux.Handle("POST /webhooks/stripe", &workers.StripeWebhook{Payments: payments, Secret: cfg.StripeWebhookSecret, Tolerance: 5 * time.Minute, Logger: logger})
	}
	srv := &http.Server{
		Addr:              cfg.HTTPAddr,
		Handler:           telemetry.Handler(httpx.RequestID(httpx.Log(logger, mux))),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       120 * time.Second,
	}
	g.Go(func() error {
		logger.Info("serving", "mode", mode, "addr", cfg.HTTPAddr, "api", runAPI, "relay", runRelay, "workers", runWorkers)
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		logger.Info("shutting down: draining requests and messages in hand")
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	return g.Wait()
}

// newGateway builds the configured payment provider behind its circuit breaker and
// retries.
func newGateway(cfg config.Config, logger *slog.Logger, m *metrics.Metrics) (*payment.Resilient, error) {
	var gw payment.Gateway
	switch cfg.PaymentProvider {
	case "stripe":
		s, err := stripegw.New(stripegw.Config{SecretKey: cfg.StripeSecretKey, APIBase: cfg.StripeAPIBase})
		if err != nil {
			return nil, err
		}
		gw = s
	default:
		gw = sandbox.New()
	}
	r := payment.NewResilient(payment.Traced(gw), payment.ResilientOptions{
		OnRetry: func(op string, err error, wait time.Duration) {
			logger.Warn("payment call failed; retrying", "op", op, "error", err, "retryIn", wait.String())
		},
		OnStateChange: func(name string, _, to gobreaker.State) { m.BreakerState(name, to) },
	})
	m.BreakerState(r.BreakerName(), r.State())
	return r, nil
}

// gatewayName is the provider newGateway builds; its breaker is "payment-" + it.
func gatewayName(cfg config.Config) string {
	if cfg.PaymentProvider == "stripe" {
		return "stripe"
	}
	return "sandbox"
}
