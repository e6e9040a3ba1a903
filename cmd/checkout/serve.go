package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"os"
	"time"

	"github.com/99designs/gqlgen/graphql/playground"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/checkout-backend/checkout/graph"
	"github.com/checkout-backend/checkout/graph/gqlhttp"
	"github.com/checkout-backend/checkout/internal/broker"
	"github.com/checkout-backend/checkout/internal/catalog"
	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/feed"
	"github.com/checkout-backend/checkout/internal/payment"
	"github.com/checkout-backend/checkout/internal/payment/sandbox"
	stripegw "github.com/checkout-backend/checkout/internal/payment/stripe"
	"github.com/checkout-backend/checkout/internal/platform/auth"
	"github.com/checkout-backend/checkout/internal/platform/config"
	"github.com/checkout-backend/checkout/internal/platform/httpx"
	"github.com/checkout-backend/checkout/internal/platform/metrics"
	"github.com/checkout-backend/checkout/internal/platform/overload"
	"github.com/checkout-backend/checkout/internal/platform/telemetry"
	"github.com/checkout-backend/checkout/internal/platform/tlsx"
	"github.com/checkout-backend/checkout/internal/redishold"
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
	// TLS: the listeners' configuration (nil: plain HTTP), the partners' certificates,
	// and AMQP_URL with the AMQP_TLS_* files amqp091-go reads on each dial.
	serverTLS, partnerCerts, err := tlsSettings(&cfg, logger)
	if err != nil {
		return err
	}
	// Tracing first: the SQL hook and otelhttp take their tracer when they are built, and
	// the outbox stamps trace context on events with the propagator Setup installs.
	stopTracing, err := telemetry.Setup(ctx, "checkout")
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		stopTracing(sctx)
	}()
	db, err := store.Open(ctx, cfg.DatabaseURL, store.Options{MaxOpenConns: cfg.DBMaxConns, QueryHook: store.TraceHook("checkout")})
	if err != nil {
		return err
	}
	defer db.Close()
	if *migrate {
		if err := store.Migrate(ctx, db); err != nil {
			return err
		}
	}
	consumers := workers.DeploymentConsumers(cfg.AnalyticsSink != "off")
	topo := broker.Topology{Prefix: cfg.AMQPPrefix, Consumers: consumers, RetryDelays: cfg.RetryDelays, QuorumSize: cfg.AMQPQuorumSize}
	consumerNames := make([]string, len(consumers))
	for i, c := range consumers {
		consumerNames[i] = c.Name
	}
	// The one clock every part reads.
	now := time.Now
	m := metrics.New(metrics.Options{Breakers: []string{"payment-" + gatewayName(cfg)}, Consumers: consumerNames})
	// --- analytics and log shipping (issue 14): logs teed to Loki when LOKI_URL is set ---
	logger, stopLogs, err := shipLogs(cfg, logger, m)
	if err != nil {
		return err
	}
	defer stopLogs()
	// --- end analytics and log shipping ---
	m.DBStats(db.DB, "background")
	m.OutboxBacklog(func(ctx context.Context) (int, time.Duration, error) { return outbox.Backlog(ctx, db, now()) })
	webhookPolicy := webhook.Policy{AllowPrivate: cfg.WebhookAllowPrivate}
	// Webhook secrets are sealed at rest with WEBHOOK_SECRET_KEY: the API seals them,
	// the delivery worker opens them to sign.
	sealer, err := webhook.NewSealer(cfg.WebhookSecretKey)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	webhookStore := store.NewWebhooks(db, now)
	// Publishing and consuming get their own connections, as RabbitMQ advises.
	pubBroker := broker.New(cfg.AMQPURL, topo, logger)
	pubBroker.OnBlocked = m.BrokerBlocked
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
	// Business metrics are counted when the change commits: once, whichever process
	// made it, and never for one that rolled back.
	// Relays are woken after each commit that wrote events: at once in this process, by a
	// coalesced NOTIFY in the others.
	notifier := outbox.NewNotifier(db)
	ordersOpt := store.OrdersOptions{Now: now, OnCommit: m.OrderCommitted, OnRedisFallback: m.RedisFallback, Notify: notifier.Notify}
	strategy, err := store.ParseStrategy(cfg.ReservationStrategy)
	if err != nil {
		return err
	}
	if strategy == store.StrategyRedis {
		rdb, err := redisClient(cfg, logger)
		if err != nil {
			return err
		}
		defer rdb.Close()
		ordersOpt.Redis = redishold.New(rdb, cfg.AMQPPrefix+"checkout:")
	}
	// The background's order adapter (workers, sweeper, feed) places no checkout.
	orders := store.NewOrders(db, ordersOpt)
	if strategy == store.StrategyRedis {
		if err := orders.SyncStockCache(ctx, nil); err != nil {
			logger.Warn("redis stock counters not synced at start; checkouts use row locks until they are", "error", err)
		}
	}
	g, ctx := errgroup.WithContext(ctx)

	if runRelay {
		relay, err := outbox.NewRelay(db, broker.TracePublisher(pubBroker), outbox.RelayOptions{Batch: cfg.OutboxBatch,
			Poll: cfg.OutboxPoll, Logger: logger, Now: now, Observe: m.RelayBatch, Notifier: notifier})
		if err != nil {
			return err
		}
		g.Go(func() error { return relay.Run(ctx) })
	}
	var payments *store.Payments
	if runWorkers || runAPI {
		payments = store.NewPayments(db, orders)
		defer payments.Close()
	}
	if runWorkers {
		gw, err := newGateway(cfg, logger, m)
		if err != nil {
			return err
		}
		w, err := workers.NewPaymentWorker(payments, gw, logger, now)
		if err != nil {
			return err
		}
		subBroker := broker.New(cfg.AMQPURL, topo, logger)
		defer subBroker.Close()
		// A failed message's next attempt is scheduled in PostgreSQL (the outbox), not in
		// a broker delay queue.
		opt := broker.ConsumeOptions{Prefetch: cfg.WorkerPrefetch, Concurrency: cfg.WorkerConcurrency, Observe: m.Consumer,
			Retry: outbox.Scheduler(db), Now: now}
		g.Go(func() error { return w.Run(ctx, subBroker, opt) })
		hooks := workers.NewWebhooks(webhookStore, workers.WebhookOptions{Policy: webhookPolicy, Sealer: sealer, Logger: logger, Now: now,
			Delivery: store.DeliveryPolicy{Retry: webhook.Retry{Base: cfg.WebhookBackoffBase, MaxAge: cfg.WebhookMaxAge,
				MaxAttempts: cfg.WebhookMaxAttempts}, DisableAfter: cfg.WebhookDisableAfter}})
		g.Go(func() error {
			return hooks.Run(ctx, subBroker, broker.ConsumeOptions{Observe: m.Consumer, Retry: outbox.Scheduler(db), Now: now})
		})
		// --- analytics (issue 14): its own queue and connection, never in the saga's way ---
		if cfg.AnalyticsSink != "off" {
			g.Go(func() error { return runAnalytics(ctx, cfg, db, topo, logger, m) })
		}
		// --- end analytics ---
		sweepOpt := workers.SweeperOptions{Interval: cfg.SweepInterval,
			KeyRetention: cfg.KeyRetention, OutboxRetention: cfg.OutboxRetention, Logger: logger, Now: now, OnFailure: m.SweepFailed}
		if strategy == store.StrategyRedis {
			sweepOpt.StockSync = func(ctx context.Context) error { return orders.SyncStockCache(ctx, nil) }
		}
		sweeper := workers.NewSweeper(orders, store.NewMaintenance(db, now), sweepOpt)
		g.Go(func() error { return sweeper.Run(ctx) })
	}

	mux := http.NewServeMux()
	// Edge: /metrics on METRICS_ADDR when set, else on HTTP_ADDR (the contract).
	metricsSrv := httpx.Metrics(mux, cfg.MetricsAddr, m.Handler())
	if metricsSrv == nil && cfg.Production() {
		logger.Warn("GET /metrics is served on HTTP_ADDR: set METRICS_ADDR to keep it off the public listener")
	}
	if os.Getenv("CHECKOUT_PPROF") == "1" && !cfg.Production() {
		// Profiling for development (make bench): never in production.
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	}
	httpx.Health(mux,
		httpx.Check{Name: "database", Fn: func(ctx context.Context) error { return store.Ping(ctx, db.DB) }},
		httpx.Check{Name: "broker", Fn: pubBroker.Ping})
	if runAPI {
		// Separate pools: a checkout rush cannot take the catalog's connections, nor the
		// relay's and workers'.
		checkoutDB, err := store.Open(ctx, cfg.DatabaseURL, store.Options{MaxOpenConns: cfg.DBCheckoutConns, QueryHook: store.TraceHook("checkout")})
		if err != nil {
			return err
		}
		defer checkoutDB.Close()
		// --- high availability: catalog reads from a replica (DATABASE_READ_URL) ---
		readURL := cfg.DatabaseURL
		if cfg.DatabaseReadURL != "" {
			readURL = cfg.DatabaseReadURL
		}
		readDB, err := store.Open(ctx, readURL, store.Options{MaxOpenConns: cfg.DBReadConns, QueryHook: store.TraceHook("checkout")})
		if err != nil {
			return err
		}
		defer readDB.Close()
		var catalogStore catalog.Store = store.NewCatalog(readDB, now)
		if cfg.DatabaseReadURL != "" {
			// Catalog writes (admin mutations) go to the primary; reads may lag.
			catalogStore = catalog.ReadSplit{Writer: store.NewCatalog(checkoutDB, now), Reader: catalogStore}
		}
		// --- end high availability ---
		m.DBStats(checkoutDB.DB, "checkout-api")
		m.DBStats(readDB.DB, "catalog-read")
		apiOpt := ordersOpt
		apiOpt.Strategy, apiOpt.OnRetry = strategy, m.ReservationRetry
		apiOpt.Batch = store.BatchOptions{MaxSize: cfg.BatchMaxSize, MaxWait: cfg.BatchMaxWait, Workers: cfg.BatchWorkers,
			Queue: cfg.CheckoutQueue, OnBatch: m.ReservationBatch}
		apiOrders := store.NewOrders(checkoutDB, apiOpt)
		defer apiOrders.Close()
		svc, err := checkout.NewService(apiOrders, store.NewCarts(checkoutDB, now), cfg.ReservationTTL, now)
		if err != nil {
			return err
		}
		svc.CheckoutTimeout = cfg.CheckoutTimeout
		verifier := auth.NewVerifier(cfg.JWTSecret)
		feedBroker := broker.New(cfg.AMQPURL, topo, logger)
		defer feedBroker.Close()
		statusFeed := feed.New(feedBroker, orders, 16, logger)
		g.Go(func() error { return statusFeed.Run(ctx) })
		res := &graph.Resolver{ObserveCheckout: m.Checkout, Service: svc, Catalog: catalog.NewService(catalogStore), Orders: apiOrders, Feed: statusFeed,
			WebhookService: webhook.NewService(webhookStore, webhookPolicy, func() string { return uuid.Must(uuid.NewV7()).String() }).WithSealer(sealer)}
		gqlOpt, closeGQL, err := gqlhttp.FromConfig(ctx, cfg, logger)
		if err != nil {
			return err
		}
		defer closeGQL()
		// Edge: the client of a request is its JWT subject, else its address, read from
		// CLIENT_IP_HEADER only when the peer is one of TRUSTED_PROXIES.
		trusted, err := overload.ParsePrefixes(cfg.TrustedProxies)
		if err != nil {
			return fmt.Errorf("config: %w", err)
		}
		clients, err := overload.NewClients(trusted, cfg.ClientIPHeader)
		if err != nil {
			return fmt.Errorf("config: %w", err)
		}
		shed := overload.New(overload.Options{
			ClientKey: clients.Key,
			Limits: map[overload.Class]int{overload.Checkout: cfg.CheckoutConcurrency,
				overload.Read: cfg.ReadConcurrency, overload.Other: cfg.OtherConcurrency},
			MaxWait:  cfg.OverloadMaxWait,
			Rate:     rate.Limit(cfg.ClientRate),
			Burst:    cfg.ClientBurst,
			Classify: overload.GraphQL(gqlOpt.Persisted.Manifest.Document),
			Reject:   gqlhttp.Refuse,
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
		sockets := gqlhttp.SocketOptionsFromConfig(cfg)
		sockets.ClientKey, sockets.Allow = clients.Key, shed.AllowKey
		mux.Handle("/graphql", graph.Handler(res, graph.HandlerOptions{Logger: logger, Verifier: verifier, Introspection: gqlhttp.IntrospectionEnabled(cfg), HTTP: gqlOpt,
			Metrics: m, Overload: shed.Middleware, Sockets: sockets}))
		if !cfg.Production() {
			mux.Handle("GET /{$}", playground.Handler("Checkout GraphQL", "/graphql"))
		}
		mux.Handle("POST /webhooks/stripe", &stripegw.WebhookHandler{Payments: payments, Secret: cfg.StripeWebhookSecret, Tolerance: 5 * time.Minute, Logger: logger})
	}
	srv := httpx.NewServer(cfg.HTTPAddr, telemetry.Handler(httpx.RequestID(httpx.Log(logger, gqlhttp.InternalError, partnerCerts.Middleware(mux)))), cfg.HTTPWriteTimeout)
	servers := []*http.Server{srv}
	if metricsSrv != nil {
		servers = append(servers, metricsSrv)
	}
	for _, s := range servers {
		// TLS: every listener serves HTTPS when TLS_CERT_FILE is set.
		s.TLSConfig = serverTLS
		g.Go(func() error {
			logger.Info("serving", "mode", mode, "addr", s.Addr, "https", s.TLSConfig != nil, "api", runAPI && s == srv, "relay", runRelay, "workers", runWorkers)
			if err := listen(s); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("http %s: %w", s.Addr, err)
			}
			return nil
		})
	}
	g.Go(func() error {
		<-ctx.Done()
		logger.Info("shutting down: draining requests and messages in hand")
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
		defer cancel()
		var errs []error
		for _, s := range servers {
			errs = append(errs, s.Shutdown(sctx))
		}
		return errors.Join(errs...)
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

// redisClient connects to REDIS_URL (rediss:// verified with REDIS_TLS_CA_FILE, and
// REDIS_TLS_CERT_FILE presented).
func redisClient(cfg config.Config, logger *slog.Logger) (*redis.Client, error) {
	opt, err := tlsx.RedisOptions(cfg.RedisURL, redisTLSFiles(cfg), logger)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = 2*time.Second, time.Second, time.Second
	return redis.NewClient(opt), nil
}

// ---- TLS (issue 12, part 2) ----

// tlsSettings builds the listeners' TLS configuration (nil without TLS_CERT_FILE), the
// partner certificates of TLS_PARTNER_CLIENTS, and rewrites cfg.AMQPURL with the
// AMQP_TLS_* files; any file that cannot be loaded stops the start here.
func tlsSettings(cfg *config.Config, logger *slog.Logger) (*tls.Config, *auth.PartnerCerts, error) {
	partners, err := auth.NewPartnerCerts(cfg.PartnerClients)
	if err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	if cfg.AMQPURL, err = tlsx.AMQPURL(cfg.AMQPURL, tlsx.Files{CA: cfg.AMQPCAFile, Cert: cfg.AMQPCertFile, Key: cfg.AMQPKeyFile}); err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	if cfg.CertFile == "" {
		return nil, partners, nil
	}
	c, err := tlsx.Server(tlsx.ServerOptions{CertFile: cfg.CertFile, KeyFile: cfg.KeyFile, ClientCAFile: cfg.ClientCAFile,
		ClientAuth: tlsx.ClientAuth(cfg.ClientAuth), Logger: logger})
	if err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	logger.Info("tls: partners authenticated by certificate", "identities", partners.Len())
	return c, partners, nil
}

// listen serves s over HTTPS when it has a TLS configuration, else plain HTTP.
func listen(s *http.Server) error {
	if s.TLSConfig != nil {
		return s.ListenAndServeTLS("", "")
	}
	return s.ListenAndServe()
}

// redisTLSFiles are the REDIS_TLS_* files.
func redisTLSFiles(cfg config.Config) tlsx.Files {
	return tlsx.Files{CA: cfg.RedisCAFile, Cert: cfg.RedisCertFile, Key: cfg.RedisKeyFile}
}
