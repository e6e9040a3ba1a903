package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/http/pprof"
	"net/url"
	"time"

	"github.com/99designs/gqlgen/graphql/playground"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker"
	"github.com/uptrace/bun"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/checkout-backend/checkout/graph"
	"github.com/checkout-backend/checkout/graph/gqlhttp"
	"github.com/checkout-backend/checkout/internal/broker"
	"github.com/checkout-backend/checkout/internal/catalog"
	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/feed"
	"github.com/checkout-backend/checkout/internal/payment"
	"github.com/checkout-backend/checkout/internal/payment/resilience"
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
	"github.com/checkout-backend/checkout/internal/region"
	"github.com/checkout-backend/checkout/internal/store"
	"github.com/checkout-backend/checkout/internal/webhook"
	"github.com/checkout-backend/checkout/outbox"
	"github.com/checkout-backend/checkout/workers"
)

// The phases of service.build, one function each, in the order they run.

// edge is the HTTP listeners: HTTP_ADDR (the API, health, and /metrics unless
// METRICS_ADDR is set) and METRICS_ADDR; every phase registers on its mux. It also
// holds the metrics, the logger (teed to Loki with LOKI_URL) and TLS, which every
// phase uses.
type edge struct {
	closers
	s        *service
	mux      *http.ServeMux
	metrics  *metrics.Metrics
	tls      *tls.Config
	partners *auth.PartnerCerts
	servers  []*http.Server
}

func newEdge(s *service) (_ *edge, err error) {
	e := &edge{s: s, mux: http.NewServeMux()}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	// TLS: the listeners' configuration (nil: plain HTTP), the partners' certificates,
	// and AMQP_URL with the AMQP_TLS_* files amqp091-go reads on each dial.
	if e.tls, e.partners, err = tlsSettings(&s.cfg, s.logger); err != nil {
		return nil, err
	}
	consumers := workers.DeploymentConsumers(s.cfg.Analytics.Sink != "off")
	names := make([]string, len(consumers))
	for i, c := range consumers {
		names[i] = c.Name
	}
	e.metrics = metrics.New(metrics.Options{Breakers: []string{"payment-" + gatewayName(s.cfg)}, Consumers: names})
	s.m = e.metrics
	logger, stopLogs, err := shipLogs(s.cfg, s.logger, e.metrics)
	if err != nil {
		return nil, err
	}
	s.logger = logger
	e.add(func() error { stopLogs(); return nil })
	if s.cfg.Debug.Pprof && !s.cfg.Production() {
		// Profiling for development (make bench): never in production.
		e.mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		e.mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	}
	return e, nil
}

// ready makes the listeners once every phase registered its routes.
func (e *edge) ready(p parts) {
	cfg := e.s.cfg
	// Edge: /metrics on METRICS_ADDR when set, else on HTTP_ADDR (the contract; production
	// refuses to start without METRICS_ADDR).
	metricsSrv := httpx.Metrics(e.mux, cfg.HTTP.MetricsAddr, e.metrics.Handler())
	h := telemetry.Handler(httpx.RequestID(httpx.Log(e.s.logger, gqlhttp.InternalError, e.partners.Middleware(e.mux))))
	e.servers = []*http.Server{httpx.NewServer(cfg.HTTP.Addr, h, cfg.HTTP.WriteTimeout)}
	if metricsSrv != nil {
		e.servers = append(e.servers, metricsSrv)
	}
	for _, srv := range e.servers {
		// TLS: every listener serves HTTPS when TLS_CERT_FILE is set.
		srv.TLSConfig = e.tls
	}
	e.s.logger.Info("serving", "mode", e.s.mode, "addr", cfg.HTTP.Addr, "https", e.tls != nil, "api", p.api, "relay", p.relay, "workers", p.workers)
}

// Run serves until ctx ends, then drains the requests in flight (SHUTDOWN_TIMEOUT).
func (e *edge) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, srv := range e.servers {
		g.Go(func() error {
			if err := listen(srv); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("http %s: %w", srv.Addr, err)
			}
			return nil
		})
	}
	g.Go(func() error {
		<-ctx.Done()
		e.s.logger.Info("shutting down: draining requests and messages in hand")
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.s.cfg.HTTP.ShutdownTimeout)
		defer cancel()
		var errs []error
		for _, srv := range e.servers {
			errs = append(errs, srv.Shutdown(sctx))
		}
		return errors.Join(errs...)
	})
	return g.Wait()
}

// stores is the first phase: the background pool (relay, workers, sweeper, feed), the
// broker publisher and the adapters every other phase shares.
type stores struct {
	closers
	db       *bun.DB
	topo     broker.Topology
	pub      *broker.Broker
	notifier *outbox.Notifier
	// orders is the background's order adapter (workers, sweeper, feed): it places no
	// checkout.
	orders   *store.Orders
	ordersOf store.OrdersOptions
	payments *store.Payments
	webhooks *store.Webhooks
	policy   webhook.Policy
	sealer   *webhook.Sealer
	// regions is the deployment's regions (REGION, REGIONS); transfers the escrow of
	// this region's stock when there are several.
	regions   checkout.Regions
	transfers *store.Transfers
}

func newStores(ctx context.Context, s *service, e *edge, p parts, migrate bool) (_ *stores, err error) {
	cfg, m := s.cfg, e.metrics
	st := &stores{policy: webhook.Policy{AllowPrivate: cfg.Webhooks.AllowPrivate}}
	defer func() {
		if err != nil {
			st.Close()
		}
	}()
	if st.db, err = store.Open(ctx, cfg.Database.URL, store.Options{Pooled: cfg.Database.Pooled(), MaxOpenConns: cfg.Database.MaxConns,
		QueryHook: store.TraceHook("checkout"), GenericPlans: true}); err != nil {
		return nil, err
	}
	st.add(st.db.Close)
	if migrate {
		if err := store.Migrate(ctx, st.db); err != nil {
			return nil, err
		}
	}
	m.DBStats(st.db.DB, "background")
	m.OutboxBacklog(func(ctx context.Context) (int, time.Duration, error) { return outbox.Backlog(ctx, st.db, s.now()) })
	// Webhook secrets are sealed at rest with WEBHOOK_SECRET_KEY: the API seals them,
	// the delivery worker opens them to sign.
	if st.sealer, err = webhook.NewSealer(cfg.Webhooks.SecretKey); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	st.webhooks = store.NewWebhooks(st.db, s.now)
	if st.regions, err = checkout.NewRegions(cfg.Checkout.Regions, cfg.Checkout.Region); err != nil {
		return nil, fmt.Errorf("config: REGION, REGIONS: %w", err)
	}
	if len(st.regions.Names) > 1 {
		st.transfers = store.NewTransfers(st.db, s.now, st.regions.Local)
	}
	withAnalytics := cfg.Analytics.Sink != "off"
	st.topo = broker.Topology{Prefix: cfg.Broker.Prefix,
		Consumers:   append(workers.DeploymentConsumers(withAnalytics), workers.RegionConsumers(st.regions)...),
		Idle:        workers.IdleConsumers(withAnalytics),
		RetryDelays: cfg.Workers.RetryDelays, QuorumSize: cfg.Broker.QuorumSize,
		// The webhook fan-out's queue takes only what endpoints want.
		Demand: st.webhooks.Demand}
	// Publishing and consuming get their own connections, as RabbitMQ advises.
	st.pub = broker.New(cfg.Broker.URL, st.topo, s.logger)
	st.webhooks.BindWith(workers.FanOutBinder(st.pub))
	st.pub.OnBlocked = m.BrokerBlocked
	st.add(st.pub.Close)
	if err := st.pub.Declare(ctx); err != nil {
		// The API still takes orders (the outbox holds them); the relay retries.
		s.logger.Warn("RabbitMQ unavailable at start; the outbox will hold events until it is back", "error", err)
	}
	m.Queues(func(ctx context.Context) ([]metrics.QueueDepth, error) {
		stats, err := st.pub.QueueStats(ctx)
		out := make([]metrics.QueueDepth, len(stats))
		for i, q := range stats {
			out[i] = metrics.QueueDepth(q)
		}
		return out, err
	})
	// /readyz pings through a connection of its own, never the background pool's, and at
	// most once a second however often it is called (httpx.Readiness).
	readyDB, err := store.Open(ctx, cfg.Database.URL, store.Options{Pooled: cfg.Database.Pooled(), MaxOpenConns: 1})
	if err != nil {
		return nil, err
	}
	st.add(readyDB.Close)
	httpx.Health(e.mux, httpx.Check{Name: "database", Fn: func(ctx context.Context) error { return store.Ping(ctx, readyDB.DB) }},
		httpx.Check{Name: "broker", Fn: st.pub.Ping})
	// Business metrics are counted when a change commits: once, whichever process made
	// it, and never for one that rolled back. Relays are woken after each commit that
	// wrote events: at once in this process, by a coalesced NOTIFY in the others.
	st.notifier = outbox.NewNotifier(st.db)
	st.ordersOf = store.OrdersOptions{OnCommit: m.OrderCommitted, OnRedisFallback: m.RedisFallback, Notify: st.notifier.Notify,
		ActionHold: cfg.Checkout.ActionHoldTTL}
	strategy, err := store.ParseStrategy(cfg.Checkout.Strategy)
	if err != nil {
		return nil, err
	}
	if strategy == store.StrategyRedis {
		rdb, err := redisClient(cfg, s.logger)
		if err != nil {
			return nil, err
		}
		st.add(rdb.Close)
		st.ordersOf.Redis = redishold.New(rdb, cfg.Broker.Prefix+"checkout:")
	}
	st.orders = store.NewOrders(st.db, s.now, st.ordersOf)
	if strategy == store.StrategyRedis {
		if err := st.orders.SyncStockCache(ctx, nil); err != nil {
			s.logger.Warn("redis stock counters not synced at start; checkouts use row locks until they are", "error", err)
		}
	}
	if p.workers || p.api {
		st.payments = store.NewPayments(st.db, st.orders)
		st.add(func() error { st.payments.Close(); return nil })
	}
	return st, nil
}

// Run has nothing to run: the stores serve the other components.
func (st *stores) Run(context.Context) error { return nil }

// relayPart runs the outbox relay.
type relayPart struct {
	closers
	*outbox.Relay
}

func newRelay(ctx context.Context, s *service, st *stores) (_ *relayPart, err error) {
	cfg := s.cfg
	part := &relayPart{}
	defer func() {
		if err != nil {
			part.Close()
		}
	}()
	opt := outbox.RelayOptions{Batch: cfg.Relay.Batch, Poll: cfg.Relay.PollInterval, Linger: cfg.Relay.Linger, Logger: s.logger,
		Observe: s.m.RelayBatch, Notifier: st.notifier}
	// LISTEN needs a session: behind a transaction pooler, one direct connection of its
	// own, or none (this instance's commits still wake it; the others' are polled).
	switch {
	case !cfg.Database.Pooled():
	case cfg.Database.SessionURL != "":
		if opt.Listen, err = store.Open(ctx, cfg.Database.SessionURL, store.Options{MaxOpenConns: 1}); err != nil {
			return nil, fmt.Errorf("DATABASE_SESSION_URL: %w", err)
		}
		part.add(opt.Listen.Close)
	default:
		opt.NoListen = true
		s.logger.Info("outbox relay: no LISTEN behind a transaction pooler without DATABASE_SESSION_URL; other instances' events are polled",
			"every", cfg.Relay.PollInterval.String())
	}
	if part.Relay, err = outbox.NewRelay(st.db, broker.TracePublisher(st.pub), s.now, opt); err != nil {
		return nil, err
	}
	return part, nil
}

// workerPart runs the broker's consumers: the payment (and refund) worker and the
// partner webhooks' fan-out and delivery, on a connection of their own.
type workerPart struct {
	closers
	run func(ctx context.Context) error
}

func newWorkers(s *service, st *stores) (*workerPart, error) {
	cfg, m := s.cfg, s.m
	gw, err := newGateway(cfg, s.logger, m)
	if err != nil {
		return nil, err
	}
	pay, err := workers.NewPaymentWorker(st.payments, gw, s.logger, s.now)
	if err != nil {
		return nil, err
	}
	sub := broker.New(cfg.Broker.URL, st.topo, s.logger)
	w := &workerPart{}
	w.add(sub.Close)
	// A failed message's next attempt is scheduled in PostgreSQL (the outbox), not in a
	// broker delay queue.
	payOpt := broker.ConsumeOptions{Prefetch: cfg.Workers.Prefetch, Concurrency: cfg.Workers.Concurrency, Observe: m.Consumer,
		Retry: outbox.Scheduler(st.db, s.now)}
	hooks := workers.NewWebhooks(st.webhooks, s.now, workers.WebhookOptions{Policy: st.policy, Sealer: st.sealer, Logger: s.logger,
		Delivery: store.DeliveryPolicy{Retry: webhook.Retry{Base: cfg.Webhooks.BackoffBase, MaxAge: cfg.Webhooks.MaxAge,
			MaxAttempts: cfg.Webhooks.MaxAttempts}, DisableAfter: cfg.Webhooks.DisableAfter}})
	hookOpt := broker.ConsumeOptions{Observe: m.Consumer, Retry: outbox.Scheduler(st.db, s.now)}
	// With several regions: the transfers addressed to this region, the rebalancer that
	// asks the others for what runs low here, and the catalog replica.
	var transfers *workers.TransferWorker
	var rebalancer *workers.Rebalancer
	var replica *workers.CatalogWorker
	if st.transfers != nil {
		c := cfg.Checkout
		transfers = workers.NewTransferWorker(st.transfers, c.RebalanceLow, s.logger)
		replica = workers.NewCatalogWorker(store.NewCatalog(st.db, s.now), s.logger)
		m.AddConsumer(workers.TransferConsumer)
		m.AddConsumer(workers.CatalogConsumer)
		if rebalancer, err = workers.NewRebalancer(st.transfers, st.regions.Peers(), workers.RebalancerOptions{
			Interval: c.RebalanceInterval, Logger: s.logger, AskOptions: checkout.AskOptions{Low: c.RebalanceLow,
				Target: c.RebalanceTarget, Reask: c.RebalanceReask, Idle: c.RebalanceIdle, Warehouse: c.RebalanceWarehouse}}); err != nil {
			return nil, err
		}
	}
	w.run = func(ctx context.Context) error {
		g, ctx := errgroup.WithContext(ctx)
		g.Go(func() error { return pay.Run(ctx, sub, payOpt) })
		g.Go(func() error { return hooks.Run(ctx, sub, hookOpt) })
		if transfers != nil {
			g.Go(func() error { return transfers.Run(ctx, sub, payOpt) })
			g.Go(func() error { return replica.Run(ctx, sub, payOpt) })
			g.Go(func() error { return rebalancer.Run(ctx) })
		}
		return g.Wait()
	}
	return w, nil
}

// Run consumes until ctx ends.
func (w *workerPart) Run(ctx context.Context) error { return w.run(ctx) }

// sweeperPart runs the sweeper: expiries, retention, the queue tables' upkeep and, with
// the redis strategy, the counters' sync.
type sweeperPart struct {
	closers
	*workers.Sweeper
}

func newSweeper(s *service, st *stores) *sweeperPart {
	cfg := s.cfg
	opt := workers.SweeperOptions{Interval: cfg.Workers.SweepInterval, KeyRetention: cfg.Checkout.KeyRetention,
		OutboxRetention: cfg.Relay.Retention, Logger: s.logger, OnFailure: s.m.SweepFailed}
	if st.ordersOf.Redis != nil {
		opt.StockSync = func(ctx context.Context) error { return st.orders.SyncStockCache(ctx, nil) }
	}
	return &sweeperPart{Sweeper: workers.NewSweeper(st.orders, store.NewMaintenance(st.db, s.now), s.now, opt)}
}

// apiPart is the GraphQL API and the Stripe webhook: its own pools (checkout, catalog
// reads), its order adapter (the strategy's checkout), and the status feed of
// subscriptions.
type apiPart struct {
	closers
	feed *feed.Feed
}

func newAPI(ctx context.Context, s *service, st *stores, e *edge) (_ *apiPart, err error) {
	cfg, m := s.cfg, e.metrics
	a := &apiPart{}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	// Separate pools: a checkout rush cannot take the catalog's connections, nor the
	// relay's and workers'.
	checkoutDB, err := store.Open(ctx, cfg.Database.URL, store.Options{Pooled: cfg.Database.Pooled(), MaxOpenConns: cfg.Database.CheckoutConns,
		QueryHook: store.TraceHook("checkout"), GenericPlans: true})
	if err != nil {
		return nil, err
	}
	a.add(checkoutDB.Close)
	// Catalog reads from a replica when DATABASE_READ_URL is set.
	readURL := cfg.Database.URL
	if cfg.Database.ReadURL != "" {
		readURL = cfg.Database.ReadURL
	}
	readDB, err := store.Open(ctx, readURL, store.Options{Pooled: cfg.Database.Pooled(), MaxOpenConns: cfg.Database.ReadConns, QueryHook: store.TraceHook("checkout")})
	if err != nil {
		return nil, err
	}
	a.add(readDB.Close)
	// With several regions, each product an admin creates or changes here is announced
	// to the others (their catalog replicas apply it).
	region := ""
	if len(st.regions.Names) > 1 {
		region = st.regions.Local
	}
	var catalogStore catalog.Store = store.NewCatalog(readDB, s.now).InRegion(region)
	if cfg.Database.ReadURL != "" {
		// Catalog writes (admin mutations) go to the primary; reads may lag.
		catalogStore = catalog.ReadSplit{Writer: store.NewCatalog(checkoutDB, s.now).InRegion(region), Reader: catalogStore}
	}
	m.DBStats(checkoutDB.DB, "checkout-api")
	m.DBStats(readDB.DB, "catalog-read")
	strategy, err := store.ParseStrategy(cfg.Checkout.Strategy)
	if err != nil {
		return nil, err
	}
	opt := st.ordersOf
	opt.Strategy, opt.OnRetry = strategy, m.ReservationRetry
	opt.Batch = store.BatchOptions{MaxSize: cfg.Checkout.BatchMaxSize, MaxWait: cfg.Checkout.BatchMaxWait, Workers: cfg.Checkout.BatchWorkers,
		Queue: cfg.Checkout.Queue, OnBatch: m.ReservationBatch}
	orders := store.NewOrders(checkoutDB, s.now, opt)
	a.add(func() error { orders.Close(); return nil })
	svc, err := checkout.NewService(orders, store.NewCarts(checkoutDB, s.now), cfg.Checkout.ReservationTTL, s.now)
	if err != nil {
		return nil, err
	}
	svc.CheckoutTimeout = cfg.Checkout.Timeout
	svc.Regions = st.regions
	var remote checkout.RemoteOrders
	if len(svc.Regions.Names) > 0 {
		if remote, err = forwarder(svc.Regions, cfg.Checkout.RegionURLs); err != nil {
			return nil, err
		}
	}
	svc.Limits = checkout.PurchaseLimits{MaxUnpaidOrders: cfg.Checkout.MaxUnpaidOrders,
		MaxFailedPayments: cfg.Checkout.MaxFailedPayments, FailedPaymentWindow: cfg.Checkout.FailedPaymentWindow}
	feedBroker := broker.New(cfg.Broker.URL, st.topo, s.logger)
	a.add(feedBroker.Close)
	a.feed = feed.New(feedBroker, st.orders, 16, s.logger)
	res := &graph.Resolver{Now: s.now, ObserveCheckout: m.Checkout, Service: svc, Catalog: catalog.NewService(catalogStore), Orders: orders, Feed: a.feed,
		WebhookService: webhook.NewService(st.webhooks, st.policy, func() string { return uuid.Must(uuid.NewV7()).String() }).WithSealer(st.sealer),
		Regions:        svc.Regions, Remote: remote}
	gqlOpt, closeGQL, err := gqlhttp.FromConfig(ctx, cfg, s.logger)
	if err != nil {
		return nil, err
	}
	a.add(func() error { closeGQL(); return nil })
	shed, clientKey, err := newShedder(cfg, m, gqlOpt)
	if err != nil {
		return nil, err
	}
	sockets := gqlhttp.SocketOptionsFromConfig(cfg)
	sockets.ClientKey, sockets.Allow = clientKey, shed.AllowKey
	e.mux.Handle("/graphql", graph.Handler(res, graph.HandlerOptions{Logger: s.logger, Verifier: auth.NewVerifierWith(cfg.Auth.JWTSecret, authOptions(cfg)),
		Introspection: cfg.Introspection(), HTTP: gqlOpt, Metrics: m, Overload: shed.Middleware, Sockets: sockets}))
	if !cfg.Production() {
		e.mux.Handle("GET /{$}", playground.Handler("Checkout GraphQL", "/graphql"))
		// The storefront starter's development sign-in (storefront/README.md).
		e.mux.Handle("POST /dev/token", auth.DevTokenHandler(cfg.Auth.JWTSecret, authOptions(cfg)))
	}
	mountStripeWebhook(e.mux, cfg, clientKey, st.payments, s.logger, m)
	return a, nil
}

// mountStripeWebhook serves POST /webhooks/stripe when STRIPE_WEBHOOK_SECRET is set
// (without it there is no such endpoint: 404), behind a load shedder of its own: a
// bucket per sender address (STRIPE_WEBHOOK_RATE, apart from the API's buckets, so
// neither starves the other) and the body read whole within HTTP_BODY_TIMEOUT before
// the handler runs. It returns the handler, or nil when it is not mounted.
func mountStripeWebhook(mux *http.ServeMux, cfg config.Config, clientKey func(*http.Request) string, payments checkout.PaymentStore,
	logger *slog.Logger, m *metrics.Metrics) *stripegw.WebhookHandler {
	if cfg.Payment.StripeWebhookSecret == "" {
		return nil
	}
	h := &stripegw.WebhookHandler{Payments: payments, Secret: cfg.Payment.StripeWebhookSecret, Tolerance: 5 * time.Minute, Logger: logger}
	r := cfg.Overload.StripeWebhookRate
	shed := overload.New(overload.Options{
		Rate:      rate.Limit(r),
		Burst:     max(1, int(math.Ceil(2*r))),
		ClientKey: clientKey,
		Body:      overload.BodyOptions{MaxBytes: 1 << 20, Timeout: cfg.HTTP.BodyTimeout, PerClient: bodiesPerClient(cfg.Overload.BodiesPerClient)},
		Reject:    stripegw.RefuseWebhook,
		OnReject: func(_ overload.Class, status int) {
			if m != nil {
				m.Shed("stripe_webhook", shedReason(status))
			}
		},
	})
	mux.Handle("POST /webhooks/stripe", shed.Middleware(h))
	return h
}

// Run runs the status feed of subscriptions.
func (a *apiPart) Run(ctx context.Context) error { return a.feed.Run(ctx) }

// newShedder is the API's load shedding: bulkheads per class of request and each
// client's rate. The client of a request is its JWT subject, else its address, read
// from CLIENT_IP_HEADER only when the peer is one of TRUSTED_PROXIES.
func newShedder(cfg config.Config, m *metrics.Metrics, gqlOpt gqlhttp.Options) (*overload.Shedder, func(*http.Request) string, error) {
	trusted, err := overload.ParsePrefixes(cfg.Overload.TrustedProxies)
	if err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	clients, err := overload.NewClients(trusted, cfg.Overload.ClientIPHeader)
	if err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	o := cfg.Overload
	clients.IPv6Prefix = o.ClientIPv6Prefix
	shed := overload.New(overload.Options{
		ClientKey:           clients.Key,
		Limits:              map[overload.Class]int{overload.Checkout: o.CheckoutConcurrency, overload.Read: o.ReadConcurrency, overload.Other: o.OtherConcurrency},
		MaxWait:             o.MaxWait,
		Rate:                rate.Limit(o.ClientRate),
		Burst:               o.ClientBurst,
		CheckoutRate:        rate.Limit(o.CheckoutRate),
		CheckoutBurst:       o.CheckoutBurst,
		MaxClients:          o.ClientBuckets,
		MaxAnonymousClients: o.AnonymousBuckets,
		// Bodies are received whole, within HTTP_BODY_TIMEOUT and the body limit, before
		// the classifier reads them and before a slot is taken.
		Body: overload.BodyOptions{MaxBytes: gqlOpt.Limits.WithDefaults().MaxBodyBytes, Timeout: cfg.HTTP.BodyTimeout,
			PerClient: bodiesPerClient(o.BodiesPerClient)},
		Classify: gqlhttp.Classify(gqlOpt.Persisted.Manifest.Document),
		Reject:   gqlhttp.Refuser(gqlOpt.Limits),
		OnReject: func(c overload.Class, status int) { m.Shed(string(c), shedReason(status)) },
	})
	for _, c := range []overload.Class{overload.Checkout, overload.Read, overload.Other} {
		m.InFlight(string(c), func() int { return shed.InFlight(c) })
	}
	return shed, clients.Key, nil
}

// shedReason is the reason label of a refusal of the shedder.
func shedReason(status int) string {
	switch status {
	case http.StatusTooManyRequests:
		return "rate_limited"
	case http.StatusRequestTimeout:
		return "body_timeout"
	case http.StatusRequestEntityTooLarge:
		return "body_too_large"
	case http.StatusBadRequest:
		return "body_broken"
	}
	return "busy"
}

// bodiesPerClient is BODIES_PER_CLIENT as overload.BodyOptions.PerClient has it (0 there
// is the default; off is negative).
func bodiesPerClient(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// newGateway builds the configured payment provider behind its circuit breaker and
// retries.
func newGateway(cfg config.Config, logger *slog.Logger, m *metrics.Metrics) (*resilience.Gateway, error) {
	var gw payment.Gateway
	switch cfg.Payment.Provider {
	case "stripe":
		s, err := stripegw.New(stripegw.Config{SecretKey: cfg.Payment.StripeSecretKey, APIBase: cfg.Payment.StripeAPIBase})
		if err != nil {
			return nil, err
		}
		gw = s
	default:
		gw = sandbox.New()
	}
	r := resilience.New(resilience.Traced(gw), resilience.Options{
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
	if cfg.Payment.Provider == "stripe" {
		return "stripe"
	}
	return "sandbox"
}

// redisClient connects to REDIS_URL (rediss:// verified with REDIS_TLS_CA_FILE, and
// REDIS_TLS_CERT_FILE presented).
func redisClient(cfg config.Config, logger *slog.Logger) (*redis.Client, error) {
	opt, err := tlsx.RedisOptions(cfg.Redis.URL, redisTLSFiles(cfg), logger)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = 2*time.Second, time.Second, time.Second
	return redis.NewClient(opt), nil
}

// tlsSettings builds the listeners' TLS configuration (nil without TLS_CERT_FILE), the
// partner certificates of TLS_PARTNER_CLIENTS, and rewrites cfg's AMQP_URL with the
// AMQP_TLS_* files; any file that cannot be loaded stops the start here.
func tlsSettings(cfg *config.Config, logger *slog.Logger) (*tls.Config, *auth.PartnerCerts, error) {
	partners, err := auth.NewPartnerCerts(cfg.TLS.PartnerClients)
	if err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	b := cfg.Broker
	if cfg.Broker.URL, err = tlsx.AMQPURL(b.URL, tlsx.Files{CA: b.CAFile, Cert: b.CertFile, Key: b.KeyFile}); err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	t := cfg.TLS
	if t.CertFile == "" {
		return nil, partners, nil
	}
	c, cas, err := tlsx.ServerWithClientCAs(tlsx.ServerOptions{CertFile: t.CertFile, KeyFile: t.KeyFile, ClientCAFile: t.ClientCAFile,
		ClientAuth: tlsx.ClientAuth(t.ClientAuth), Logger: logger})
	if err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	// A partner's certificate is checked again on connections that outlive the
	// handshake: its expiry and the current client CA.
	partners.WithRecheck(auth.Recheck{ClientCAs: cas})
	logger.Info("tls: partners authenticated by certificate", "identities", partners.Len())
	return c, partners, nil
}

// listen serves srv over HTTPS when it has a TLS configuration, else plain HTTP.
func listen(srv *http.Server) error {
	if srv.TLSConfig != nil {
		return srv.ListenAndServeTLS("", "")
	}
	return srv.ListenAndServe()
}

// redisTLSFiles are the REDIS_TLS_* files.
func redisTLSFiles(cfg config.Config) tlsx.Files {
	return tlsx.Files{CA: cfg.Redis.CAFile, Cert: cfg.Redis.CertFile, Key: cfg.Redis.KeyFile}
}

// authOptions are the token checks JWT_ISSUER, JWT_AUDIENCE and JWT_MAX_LIFETIME ask for.
func authOptions(cfg config.Config) auth.Options {
	return auth.Options{Issuer: cfg.Auth.Issuer, Audience: cfg.Auth.Audience, MaxLifetime: cfg.Auth.MaxLifetime}
}

// forwarder sends operations on other regions' orders to their APIs (REGION_URLS):
// every region of REGIONS but this one needs an http(s) address.
func forwarder(r checkout.Regions, urls map[string]string) (*region.Forwarder, error) {
	for _, name := range r.Names {
		if name == r.Local {
			continue
		}
		u, err := url.Parse(urls[name])
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf("config: REGION_URLS needs an http(s) address for region %s (got %q)", name, urls[name])
		}
	}
	return &region.Forwarder{Local: r.Local, URLs: urls}, nil
}
