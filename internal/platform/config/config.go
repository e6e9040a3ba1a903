// Package config reads the service's configuration from the environment (the names of
// ../shared/API.md), grouped by the component each setting tunes, with development
// defaults. Every variable the service reads is a field here; its default is written
// once, in its envDefault tag, and docs/configuration.md is generated from this file
// (go generate ./internal/platform/config).
package config

//go:generate go test -run TestConfigurationDoc -update-doc .

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
)

// DevJWTSecret is the development default; production refuses it.
const DevJWTSecret = "dev-secret-change-me-0123456789abcdef"

// Config is the whole configuration, one group per component.
type Config struct {
	// Env names the environment: production (or prod, in any case) turns on what
	// production refuses (docs/security.md).
	Env string `env:"APP_ENV" envDefault:"development"`

	HTTP      HTTP
	Database  Database
	Broker    Broker
	Redis     Redis
	Auth      Auth
	Checkout  Checkout
	Payment   Payment
	Relay     Relay
	Workers   Workers
	Webhooks  Webhooks
	GraphQL   GraphQL
	Sockets   Sockets
	Overload  Overload
	Analytics Analytics
	Logs      Logs
	Telemetry Telemetry
	TLS       TLS
	Debug     Debug
}

// HTTP is the service's listeners.
type HTTP struct {
	// Addr is the listen address of the API, /healthz, /readyz and (unless
	// METRICS_ADDR is set) /metrics.
	Addr string `env:"HTTP_ADDR" envDefault:":8080"`
	// MetricsAddr, when set (e.g. 127.0.0.1:9464), serves GET /metrics there and no
	// longer on HTTP_ADDR.
	MetricsAddr string `env:"METRICS_ADDR"`
	// WriteTimeout bounds the writing of one HTTP response (WebSocket connections are
	// not cut by it).
	WriteTimeout time.Duration `env:"HTTP_WRITE_TIMEOUT" envDefault:"30s"`
	// BodyTimeout bounds the reading of a whole request body, done before the request
	// takes a slot of the load shedder: a body not complete by then is answered 408
	// REQUEST_TIMEOUT (a 1 MiB body needs about 1.7 Mbit/s to make the default).
	BodyTimeout time.Duration `env:"HTTP_BODY_TIMEOUT" envDefault:"5s"`
	// ShutdownTimeout is how long SIGTERM drains requests and the messages in hand.
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"20s"`
}

// Database is PostgreSQL and the service's connection pools.
type Database struct {
	// URL is PostgreSQL (TLS: sslmode=verify-full&sslrootcert=CA&sslcert=CERT&sslkey=KEY);
	// several hosts with target_session_attrs=read-write follow a failover.
	URL string `env:"DATABASE_URL" envDefault:"postgres://postgres@127.0.0.1:5432/checkout?sslmode=disable"`
	// ReadURL, when set, serves the catalog's reads (products, stock levels) from a
	// replica (or several hosts with target_session_attrs=prefer-standby), which may lag;
	// checkout, payment and every write stay on DATABASE_URL.
	ReadURL string `env:"DATABASE_READ_URL"`
	// MaxConns is the pool of the relay, workers, sweeper and status feed.
	MaxConns int `env:"DB_MAX_CONNS" envDefault:"20"`
	// CheckoutConns is the API's pool for checkout and its other writes: a checkout rush
	// cannot take the catalog's connections, nor the relay's and workers'.
	CheckoutConns int `env:"DB_CHECKOUT_CONNS" envDefault:"16"`
	// ReadConns is the API's pool for catalog reads.
	ReadConns int `env:"DB_READ_CONNS" envDefault:"8"`
	// PoolMode says what DATABASE_URL (and DATABASE_READ_URL) lead to: "session", a
	// server or a session pooler; "transaction", a transaction pooler (PgBouncer with
	// pool_mode = transaction), where no session state may be set: the session limits
	// are then the pooler's (connect_query) and the relay's LISTEN goes to DATABASE_SESSION_URL.
	PoolMode string `env:"DATABASE_POOL_MODE" envDefault:"session"`
	// SessionURL, with DATABASE_POOL_MODE=transaction, is a direct connection to the
	// primary (or a session pooler, or HAProxy's primary port) for the one thing that
	// needs a session: the relay's LISTEN, which wakes it when another instance commits
	// events (one connection per instance). Unset: the relay is woken by its own
	// instance's commits and polls every OUTBOX_POLL_INTERVAL for the others'.
	SessionURL string `env:"DATABASE_SESSION_URL"`
}

// Pooled reports whether DATABASE_URL is a transaction pooler.
func (d Database) Pooled() bool { return d.PoolMode == "transaction" }

// Broker is RabbitMQ.
type Broker struct {
	// URL is RabbitMQ; a cluster's nodes as comma-separated URLs, dialled in turn.
	URL string `env:"AMQP_URL" envDefault:"amqp://guest:guest@127.0.0.1:5672/"`
	// Prefix prefixes exchange and queue names (several deployments on one broker).
	Prefix string `env:"AMQP_PREFIX"`
	// QuorumSize is the quorum queues' replication factor when they are created
	// (x-quorum-initial-group-size); RabbitMQ caps it at the cluster's size.
	QuorumSize int `env:"AMQP_QUORUM_SIZE" envDefault:"3"`
	// CAFile verifies an amqps:// server (the system roots when unset).
	CAFile string `env:"AMQP_TLS_CA_FILE"`
	// CertFile and KeyFile are the client certificate presented to an amqps:// server.
	CertFile string `env:"AMQP_TLS_CERT_FILE"`
	KeyFile  string `env:"AMQP_TLS_KEY_FILE"`
}

// Redis is the optional Redis: the shared store of automatic persisted queries and the
// counters of the redis reservation strategy.
type Redis struct {
	// URL is Redis (redis:// or rediss://); unset, persisted queries are kept in each
	// process and the redis strategy cannot run.
	URL string `env:"REDIS_URL"`
	// CAFile verifies a rediss:// server (the system roots when unset).
	CAFile string `env:"REDIS_TLS_CA_FILE"`
	// CertFile and KeyFile are the client certificate presented to a rediss:// server.
	CertFile string `env:"REDIS_TLS_CERT_FILE"`
	KeyFile  string `env:"REDIS_TLS_KEY_FILE"`
}

// Auth is how callers are authenticated.
type Auth struct {
	// JWTSecret is the HS256 secret of bearer tokens, 32 bytes or more; production
	// refuses the development default.
	JWTSecret string `env:"JWT_SECRET" envDefault:"dev-secret-change-me-0123456789abcdef"`
	// Issuer, when set, is the iss every token must carry (the service that mints them);
	// production requires it.
	Issuer string `env:"JWT_ISSUER"`
	// Audience, when set, must be among every token's aud (this service's name): a token
	// minted for another service of the same issuer is refused; production requires it.
	Audience string `env:"JWT_AUDIENCE"`
	// MaxLifetime bounds a token's exp minus its iat (and iat must be there): a token
	// valid longer is refused, so a stolen one cannot be a session for years, and every
	// socket it opens closes by then.
	MaxLifetime time.Duration `env:"JWT_MAX_LIFETIME" envDefault:"24h"`
}

// Checkout is the checkout and its reservation strategy (docs/performance.md).
type Checkout struct {
	// ReservationTTL is how long an unpaid order holds its stock.
	ReservationTTL time.Duration `env:"RESERVATION_TTL" envDefault:"10m"`
	// Strategy is how a checkout reserves its stock: batch, lock, optimistic or redis.
	Strategy string `env:"RESERVATION_STRATEGY" envDefault:"batch"`
	// BatchMaxSize bounds the orders of one transaction of the batch strategy.
	BatchMaxSize int `env:"BATCH_MAX_SIZE" envDefault:"64"`
	// BatchMaxWait is how long a batch waits for company while another is in flight.
	BatchMaxWait time.Duration `env:"BATCH_MAX_WAIT" envDefault:"1ms"`
	// BatchWorkers is how many batch transactions run at once.
	BatchWorkers int `env:"BATCH_WORKERS" envDefault:"4"`
	// Queue bounds the checkouts waiting for a batch; past it SERVICE_UNAVAILABLE at once.
	Queue int `env:"CHECKOUT_QUEUE" envDefault:"4096"`
	// Timeout is each checkout's deadline; past it SERVICE_UNAVAILABLE (retryable with
	// the same idempotency key).
	Timeout time.Duration `env:"CHECKOUT_TIMEOUT" envDefault:"10s"`
	// KeyRetention is how long idempotency keys and the consumers' inbox rows are kept
	// (at least 24h: the contract keeps keys 24 hours).
	KeyRetention time.Duration `env:"IDEMPOTENCY_RETENTION" envDefault:"168h"`
	// MaxUnpaidOrders caps a customer's orders awaiting payment; past it a checkout
	// answers TOO_MANY_UNPAID_ORDERS (0: no cap).
	MaxUnpaidOrders int `env:"CHECKOUT_MAX_UNPAID_ORDERS" envDefault:"3"`
	// MaxFailedPayments caps a customer's failed payments within
	// CHECKOUT_FAILED_PAYMENT_WINDOW; past it a checkout answers TOO_MANY_FAILED_PAYMENTS
	// until the window passes (0: no cap).
	MaxFailedPayments int `env:"CHECKOUT_MAX_FAILED_PAYMENTS" envDefault:"5"`
	// FailedPaymentWindow is how long a failed payment counts against its customer.
	FailedPaymentWindow time.Duration `env:"CHECKOUT_FAILED_PAYMENT_WINDOW" envDefault:"1h"`
	// ActionHoldTTL is how long an order whose payment awaits the customer (3-D Secure)
	// keeps its stock, from the provider's answer (at most RESERVATION_TTL from the
	// checkout); a payment completed later is refunded.
	ActionHoldTTL time.Duration `env:"ACTION_HOLD_TTL" envDefault:"5m"`
	// Region names the region this process sells from, one of REGIONS: the orders placed
	// here carry it in their ids, so any region tells where an order lives. Empty with
	// REGIONS empty: a deployment of one region.
	Region string `env:"REGION"`
	// Regions lists every region of the deployment, in the same order in each region's
	// configuration (an order id carries its home region's place in the list, so a
	// region is only ever added at the end; one that ran alone before comes first):
	// lowercase names of letters, digits and hyphens, at most 255.
	Regions []string `env:"REGIONS" envSeparator:","`
	// RegionURLs are the other regions' API addresses, region=URL pairs separated by
	// commas (eu=https://eu.api.shop.example): reading, cancelling or shipping an order
	// that lives in another region is forwarded there with the caller's token.
	RegionURLs map[string]string `env:"REGION_URLS" envSeparator:"," envKeyValSeparator:"="`
	// RebalanceLow is the mark below which a region asks for more: with several
	// regions, each sells from its own share of each SKU's stock (escrow), and its
	// rebalancer asks the others for more of a SKU when fewer than this many units are
	// available here. A region asked keeps this many for its
	// own buyers, unless the asker has sold out (then it shares half of what it has).
	RebalanceLow int `env:"REBALANCE_LOW" envDefault:"10"`
	// RebalanceTarget is how many units of a SKU a region asks to have: it asks for
	// this less what is available.
	RebalanceTarget int `env:"REBALANCE_TARGET" envDefault:"50"`
	// RebalanceInterval is how often the rebalancer looks for SKUs running low.
	RebalanceInterval time.Duration `env:"REBALANCE_INTERVAL" envDefault:"1s"`
	// RebalanceReask is the least time between two requests for one SKU (a request lost in a
	// partition is asked again after it, of the next region in turn).
	RebalanceReask time.Duration `env:"REBALANCE_REASK" envDefault:"5s"`
	// RebalanceIdle is the least time after a grant of nothing before the SKU is asked
	// for again.
	RebalanceIdle time.Duration `env:"REBALANCE_IDLE" envDefault:"30s"`
	// RebalanceWarehouse receives the units of a SKU this region has no warehouse of.
	RebalanceWarehouse string `env:"REBALANCE_WAREHOUSE" envDefault:"main"`
}

// Payment is the payment provider.
type Payment struct {
	// Provider is sandbox (answers as Stripe's test tokens do; refused in production)
	// or stripe.
	Provider string `env:"PAYMENT_PROVIDER" envDefault:"sandbox"`
	// StripeSecretKey is Stripe's secret API key (required with stripe).
	StripeSecretKey string `env:"STRIPE_SECRET_KEY"`
	// StripeAPIBase overrides Stripe's API address (stripe-mock in tests; https only in
	// production).
	StripeAPIBase string `env:"STRIPE_API_BASE"`
	// StripeWebhookSecret verifies POST /webhooks/stripe (required with stripe in
	// production: a charge whose answer was lost is reconciled by it).
	StripeWebhookSecret string `env:"STRIPE_WEBHOOK_SECRET"`
}

// Relay is the outbox relay.
type Relay struct {
	// PollInterval is the relay's fallback polling; commits wake it at once.
	PollInterval time.Duration `env:"OUTBOX_POLL_INTERVAL" envDefault:"1s"`
	// Batch is how many events one claim publishes.
	Batch int `env:"OUTBOX_BATCH" envDefault:"100"`
	// Linger is how long the relay, woken by a commit, waits for more events before it
	// claims: one publish and its confirm then carry several events (RabbitMQ spends
	// more on each publish-and-confirm than on each event in it). It waits only while
	// events come faster than one a publish (its last batch held more than one); a lone
	// event is published at once. 0: it never waits.
	Linger time.Duration `env:"OUTBOX_LINGER" envDefault:"5ms"`
	// Retention is how long published events are kept.
	Retention time.Duration `env:"OUTBOX_RETENTION" envDefault:"72h"`
}

// Workers is the broker's consumers and the sweeper.
type Workers struct {
	// Prefetch is how many messages each consumer is sent ahead.
	Prefetch int `env:"WORKER_PREFETCH" envDefault:"128"`
	// Concurrency is how many messages each consumer handles at once (the payment store
	// commits concurrent charges together, so concurrency lets a burst settle in a few
	// transactions).
	Concurrency int `env:"WORKER_CONCURRENCY" envDefault:"64"`
	// RetryDelays are a consumer's retry delays, growing (scheduled in PostgreSQL,
	// jittered); after the last, the dead-letter queue. They may change between restarts.
	RetryDelays []time.Duration `env:"WORKER_RETRY_DELAYS" envSeparator:"," envDefault:"1s,4s,15s,30s,1m,2m,4m,4m"`
	// SweepInterval is how often expired reservations are released (and the queue
	// tables kept).
	SweepInterval time.Duration `env:"SWEEP_INTERVAL" envDefault:"5s"`
}

// Webhooks is partner webhooks (docs/webhooks.md).
type Webhooks struct {
	// AllowPrivate admits loopback and private webhook URLs (development and tests;
	// refused in production).
	AllowPrivate bool `env:"WEBHOOK_ALLOW_PRIVATE" envDefault:"false"`
	// BackoffBase is the first retry delay of a delivery, doubling with jitter.
	BackoffBase time.Duration `env:"WEBHOOK_BACKOFF_BASE" envDefault:"10s"`
	// MaxAge is how long a delivery is retried before it is dead-lettered.
	MaxAge time.Duration `env:"WEBHOOK_MAX_AGE" envDefault:"24h"`
	// MaxAttempts, when positive, also ends a delivery after that many attempts.
	MaxAttempts int `env:"WEBHOOK_MAX_ATTEMPTS" envDefault:"0"`
	// DisableAfter consecutive failed attempts disable an endpoint.
	DisableAfter int `env:"WEBHOOK_DISABLE_AFTER" envDefault:"50"`
	// SecretKey seals webhook signing secrets at rest: "<id>:<base64 of 32 bytes>",
	// comma separated, the first sealing (docs/security.md).
	SecretKey string `env:"WEBHOOK_SECRET_KEY"`
}

// GraphQL is the GraphQL endpoint: persisted queries, CORS and the query limits
// (docs/api-clients.md).
type GraphQL struct {
	// PersistedQueries is off, allow (automatic persisted queries and the manifest's
	// hashes) or require (only the manifest's operations run).
	PersistedQueries string `env:"PERSISTED_QUERIES" envDefault:"allow"`
	// Manifest is the trusted-documents manifest (Apollo's format or a {hash: document}
	// map).
	Manifest string `env:"PERSISTED_QUERIES_MANIFEST"`
	// CORSAllowedOrigins are the storefront origins (https://*.shop.example and *
	// allowed), comma separated.
	CORSAllowedOrigins []string `env:"CORS_ALLOWED_ORIGINS" envSeparator:","`
	// MaxComplexity bounds a query's complexity.
	MaxComplexity int `env:"GRAPHQL_MAX_COMPLEXITY" envDefault:"5000"`
	// MaxDepth bounds a query's depth.
	MaxDepth int `env:"GRAPHQL_MAX_DEPTH" envDefault:"12"`
	// MaxAliases bounds a query's aliases.
	MaxAliases int `env:"GRAPHQL_MAX_ALIASES" envDefault:"30"`
	// MaxRootFields bounds a query's root fields.
	MaxRootFields int `env:"GRAPHQL_MAX_ROOT_FIELDS" envDefault:"10"`
	// MaxBodyBytes bounds a request body.
	MaxBodyBytes int64 `env:"GRAPHQL_MAX_BODY_BYTES" envDefault:"1048576"`
	// MaxTokens bounds a document's lexical tokens, counted before it is parsed
	// (TOO_MANY_TOKENS).
	MaxTokens int `env:"GRAPHQL_MAX_TOKENS" envDefault:"10000"`
	// Introspection, when set, turns introspection on or off; unset it is on in
	// development and off in production.
	Introspection *bool `env:"GRAPHQL_INTROSPECTION"`
	// APQMaxQueryBytes is the largest automatic persisted query stored.
	APQMaxQueryBytes int `env:"APQ_MAX_QUERY_BYTES" envDefault:"16384"`
	// APQMaxEntries is how many automatic persisted queries are stored per APQ_TTL
	// window (in Redis).
	APQMaxEntries int `env:"APQ_MAX_ENTRIES" envDefault:"2000"`
	// APQMaxEntriesPerClient is how many of them one client (JWT subject, else IPv4
	// address or IPv6 prefix) may store per APQ_TTL window; anonymous clients together
	// store at most half of APQ_MAX_ENTRIES.
	APQMaxEntriesPerClient int `env:"APQ_MAX_ENTRIES_PER_CLIENT" envDefault:"100"`
	// APQTTL is how long an automatic persisted query is kept.
	APQTTL time.Duration `env:"APQ_TTL" envDefault:"24h"`
}

// Sockets is the WebSocket transport of subscriptions.
type Sockets struct {
	// InitTimeout closes a socket without connection_init by then (close code 1002).
	InitTimeout time.Duration `env:"SOCKET_INIT_TIMEOUT" envDefault:"5s"`
	// PingInterval is how often the server pings each socket; no pong within twice that
	// closes it.
	PingInterval time.Duration `env:"SOCKET_PING_INTERVAL" envDefault:"15s"`
	// WriteTimeout closes a socket whose write blocks longer (a client that stopped
	// reading).
	WriteTimeout time.Duration `env:"SOCKET_WRITE_TIMEOUT" envDefault:"10s"`
	// PerClient caps the open sockets of a client: per address until connection_init,
	// then per token subject (0: no cap).
	PerClient int `env:"SOCKETS_PER_CLIENT" envDefault:"64"`
	// SubscriptionsPerClient caps the running subscriptions of a token subject over all
	// its sockets (0: no cap).
	SubscriptionsPerClient int `env:"SUBSCRIPTIONS_PER_CLIENT" envDefault:"100"`
}

// Overload is load shedding: bulkheads per class of request and each client's rate
// (docs/operations.md).
type Overload struct {
	// CheckoutConcurrency is how many checkouts are served at once (a checkout waiting
	// for its batch costs a goroutine, not a connection; CHECKOUT_QUEUE and
	// CHECKOUT_TIMEOUT bound the wait).
	CheckoutConcurrency int `env:"CHECKOUT_CONCURRENCY" envDefault:"2048"`
	// ReadConcurrency is how many queries are served at once.
	ReadConcurrency int `env:"READ_CONCURRENCY" envDefault:"64"`
	// OtherConcurrency is how many other requests (cart edits, cancellations, admin
	// mutations) are served at once.
	OtherConcurrency int `env:"OTHER_CONCURRENCY" envDefault:"32"`
	// MaxWait is how long a request waits for a slot before 503 with Retry-After.
	MaxWait time.Duration `env:"OVERLOAD_MAX_WAIT" envDefault:"100ms"`
	// ClientRate is each client's rate in operations/s (JWT subject, else its IPv4
	// address or IPv6 prefix): a request costs one token per root field of its
	// operation; over it 429 with Retry-After; 0 turns it off. WebSocket upgrades and
	// each subscription take a token too.
	ClientRate float64 `env:"CLIENT_RATE" envDefault:"50"`
	// ClientBurst is each client's burst (keep it at least GRAPHQL_MAX_ROOT_FIELDS: a
	// request never takes more than a full bucket).
	ClientBurst int `env:"CLIENT_BURST" envDefault:"100"`
	// CheckoutRate is each client's rate of checkouts per second, a bucket of its own
	// besides CLIENT_RATE (card testing is checkouts); over it 429 with Retry-After and
	// RATE_LIMITED; 0 turns it off.
	CheckoutRate float64 `env:"CHECKOUT_RATE" envDefault:"1"`
	// CheckoutBurst is each client's burst of checkouts.
	CheckoutBurst int `env:"CHECKOUT_BURST" envDefault:"5"`
	// ClientIPv6Prefix is how many leading bits of an IPv6 address name one anonymous
	// client (a host is given a whole /64); IPv4 clients are their address.
	ClientIPv6Prefix int `env:"CLIENT_IPV6_PREFIX" envDefault:"64"`
	// ClientBuckets bounds the signed-in clients whose rate buckets are kept (least
	// recently seen dropped first).
	ClientBuckets int `env:"CLIENT_BUCKETS" envDefault:"100000"`
	// AnonymousBuckets bounds the anonymous clients whose rate buckets are kept, in a
	// table of their own: when it is full and its oldest bucket is not full, new
	// anonymous clients share one bucket rather than reset another's.
	AnonymousBuckets int `env:"CLIENT_ANONYMOUS_BUCKETS" envDefault:"50000"`
	// BodiesPerClient bounds the request bodies of one client being received at once
	// (over it 429), so one client cannot hold many slow bodies open (an HTTP/2
	// connection carries up to 100 streams); 0 turns the bound off.
	BodiesPerClient int `env:"BODIES_PER_CLIENT" envDefault:"8"`
	// StripeWebhookRate is each sender address's rate on POST /webhooks/stripe in posts/s
	// (burst: twice as many); over it 429, which Stripe retries. Stripe sends from a
	// dozen addresses (https://stripe.com/files/ips/ips_webhooks.json), each far below
	// the default.
	StripeWebhookRate float64 `env:"STRIPE_WEBHOOK_RATE" envDefault:"50"`
	// TrustedProxies are your reverse proxies (CIDR prefixes or addresses, comma
	// separated): only from them is CLIENT_IP_HEADER believed.
	TrustedProxies []string `env:"TRUSTED_PROXIES" envSeparator:","`
	// ClientIPHeader is the header your proxy sets (X-Forwarded-For or Forwarded); the
	// client is its rightmost address that is not a trusted proxy.
	ClientIPHeader string `env:"CLIENT_IP_HEADER" envDefault:"X-Forwarded-For"`
}

// Analytics is the analytics consumer and its sink (docs/analytics.md).
type Analytics struct {
	// Sink is parquet (files under ANALYTICS_DIR), elasticsearch, bigquery (Parquet
	// files under ANALYTICS_DIR, each loaded by a load job) or off.
	Sink string `env:"ANALYTICS_SINK" envDefault:"parquet"`
	// Dir holds the Parquet files (parquet and bigquery sinks; the report reads it).
	Dir string `env:"ANALYTICS_DIR" envDefault:"analytics-data"`
	// Batch is the most events of one analytics batch.
	Batch int `env:"ANALYTICS_BATCH" envDefault:"500"`
	// FlushInterval is the longest an event waits for its batch.
	FlushInterval time.Duration `env:"ANALYTICS_FLUSH_INTERVAL" envDefault:"5s"`
	// ElasticsearchURLs are the Elasticsearch nodes, comma separated.
	ElasticsearchURLs []string `env:"ELASTICSEARCH_URLS" envSeparator:","`
	// ElasticsearchAPIKey authenticates to Elasticsearch.
	ElasticsearchAPIKey string `env:"ELASTICSEARCH_API_KEY"`
	// ElasticsearchIndex prefixes the Elasticsearch indices.
	ElasticsearchIndex string `env:"ELASTICSEARCH_INDEX_PREFIX" envDefault:"checkout"`
	// BigQueryProject is the BigQuery project (credentials: Application Default
	// Credentials, GOOGLE_APPLICATION_CREDENTIALS).
	BigQueryProject string `env:"BIGQUERY_PROJECT"`
	// BigQueryDataset is the BigQuery dataset.
	BigQueryDataset string `env:"BIGQUERY_DATASET" envDefault:"checkout"`
	// BigQueryEndpoint overrides the BigQuery API endpoint (an emulator).
	BigQueryEndpoint string `env:"BIGQUERY_ENDPOINT"`
}

// Logs is log shipping.
type Logs struct {
	// LokiURL turns log shipping on (http://loki:3100): the JSON log lines, labelled
	// service, level and operation.
	LokiURL string `env:"LOKI_URL"`
	// LokiTenant is sent as X-Scope-OrgID.
	LokiTenant string `env:"LOKI_TENANT"`
}

// Telemetry is tracing. The OpenTelemetry SDK also reads its own variables itself:
// OTEL_EXPORTER_OTLP_ENDPOINT, _HEADERS, _TIMEOUT (and their _TRACES_ forms),
// OTEL_TRACES_SAMPLER(_ARG), OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
type Telemetry struct {
	// TracesExporter is none, otlp (OTLP over HTTP/protobuf) or console (spans as JSON
	// on standard error).
	TracesExporter string `env:"OTEL_TRACES_EXPORTER" envDefault:"none"`
	// OTLPProtocol must be http/protobuf when set (the one OTLP protocol built in).
	OTLPProtocol string `env:"OTEL_EXPORTER_OTLP_PROTOCOL"`
	// OTLPTracesProtocol is OTEL_EXPORTER_OTLP_PROTOCOL for traces alone.
	OTLPTracesProtocol string `env:"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"`
	// SDKDisabled turns tracing off whatever the exporter.
	SDKDisabled bool `env:"OTEL_SDK_DISABLED" envDefault:"false"`
}

// Protocol is the OTLP protocol of traces: OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, else
// OTEL_EXPORTER_OTLP_PROTOCOL.
func (t Telemetry) Protocol() string {
	if t.OTLPTracesProtocol != "" {
		return t.OTLPTracesProtocol
	}
	return t.OTLPProtocol
}

// TLS is TLS on the service's listeners and production's plain-text refusals
// (docs/security.md). The TLS of PostgreSQL is in DATABASE_URL; RabbitMQ's and Redis's
// files are in their groups.
type TLS struct {
	// CertFile and KeyFile turn HTTPS on for every listener (HTTP_ADDR, METRICS_ADDR;
	// TLS 1.2+, HTTP/2 and HTTP/1.1) from a PEM certificate chain and its key, loaded
	// again on the next handshake after the files change.
	CertFile string `env:"TLS_CERT_FILE"`
	KeyFile  string `env:"TLS_KEY_FILE"`
	// ClientCAFile (PEM) makes the listeners ask for client certificates chaining to it.
	ClientCAFile string `env:"TLS_CLIENT_CA_FILE"`
	// ClientAuth, with TLS_CLIENT_CA_FILE: require (no valid client certificate, no
	// handshake) or optional (a certificate given is verified; clients without one
	// authenticate by JWT).
	ClientAuth string `env:"TLS_CLIENT_AUTH" envDefault:"require"`
	// PartnerClients are the client certificate identities that authenticate partners,
	// comma separated: a URI SAN (spiffe://...), dns:NAME or cn:NAME.
	PartnerClients []string `env:"TLS_PARTNER_CLIENTS" envSeparator:","`
	// AllowPlaintext lists the connections production may leave unencrypted or
	// unverified, comma separated: http (a proxy in front terminates TLS), database
	// (DATABASE_URL, DATABASE_READ_URL and DATABASE_SESSION_URL), amqp, redis, loki, elasticsearch.
	AllowPlaintext []string `env:"ALLOW_PLAINTEXT" envSeparator:","`
	// AllowInsecureDatabase is the older spelling of ALLOW_PLAINTEXT=database.
	AllowInsecureDatabase bool `env:"ALLOW_INSECURE_DATABASE" envDefault:"false"`
}

// Debug is for development and benchmarks.
type Debug struct {
	// Pprof serves /debug/pprof/ on HTTP_ADDR (make bench profiles with it; never in
	// production).
	Pprof bool `env:"CHECKOUT_PPROF" envDefault:"false"`
	// GOGC is the Go runtime's own setting, which serve honours; unset, serve collects
	// garbage at 400 (memory is cheaper than the CPU a flash sale needs).
	GOGC string `env:"GOGC"`
}

// Production reports whether APP_ENV names production: "production" or "prod", in any
// case.
func (c Config) Production() bool {
	switch strings.ToLower(strings.TrimSpace(c.Env)) {
	case "production", "prod":
		return true
	}
	return false
}

// Load reads the configuration from the process's environment and checks it.
func Load() (Config, error) {
	return parse(env.Options{})
}

// LoadFrom reads the configuration from environ (NAME=value lines, as os.Environ and
// exec.Cmd.Env) and checks it: the configuration of another process.
func LoadFrom(environ []string) (Config, error) {
	return parse(env.Options{Environment: env.ToMap(environ)})
}

// Defaults is the configuration of an empty environment: every default, from the tags.
func Defaults() Config {
	c, err := parse(env.Options{Environment: map[string]string{}})
	if err != nil {
		panic(err) // the defaults are checked by a test
	}
	return c
}

func parse(opt env.Options) (Config, error) {
	var c Config
	if err := env.ParseWithOptions(&c, opt); err != nil {
		return c, fmt.Errorf("config: %w", err)
	}
	return c, c.Validate()
}

// Validate checks values that would make the service misbehave: in any environment
// the first problem, in production every refusal, one line each.
func (c Config) Validate() error {
	if err := c.valueProblems(); err != nil {
		return err
	}
	if err := c.tlsProblems(); err != nil {
		return err
	}
	if c.Production() {
		return c.productionProblems()
	}
	return nil
}

func (c Config) valueProblems() error {
	switch {
	case len(c.Auth.JWTSecret) < 32:
		return fmt.Errorf("config: JWT_SECRET must be at least 32 bytes")
	case c.Checkout.KeyRetention < 24*time.Hour:
		return fmt.Errorf("config: IDEMPOTENCY_RETENTION must be at least 24h (the contract keeps keys 24 hours)")
	case c.Broker.QuorumSize < 1:
		return fmt.Errorf("config: AMQP_QUORUM_SIZE must be at least 1")
	case c.Checkout.ReservationTTL <= 0:
		return fmt.Errorf("config: RESERVATION_TTL must be positive")
	case c.Database.PoolMode != "session" && c.Database.PoolMode != "transaction":
		return fmt.Errorf("config: DATABASE_POOL_MODE must be session or transaction")
	case c.Database.SessionURL != "" && !c.Database.Pooled():
		return fmt.Errorf("config: DATABASE_SESSION_URL is for DATABASE_POOL_MODE=transaction (DATABASE_URL already is a session)")
	case c.Payment.Provider != "sandbox" && c.Payment.Provider != "stripe":
		return fmt.Errorf("config: PAYMENT_PROVIDER must be sandbox or stripe")
	case c.Payment.Provider == "stripe" && c.Payment.StripeSecretKey == "":
		return fmt.Errorf("config: STRIPE_SECRET_KEY is required with PAYMENT_PROVIDER=stripe")
	case !slices.Contains([]string{"batch", "lock", "optimistic", "redis"}, c.Checkout.Strategy):
		return fmt.Errorf("config: RESERVATION_STRATEGY must be batch, lock, optimistic or redis")
	case c.Checkout.Strategy == "redis" && c.Redis.URL == "":
		return fmt.Errorf("config: RESERVATION_STRATEGY=redis needs REDIS_URL")
	case c.Checkout.BatchMaxSize < 1 || c.Checkout.BatchWorkers < 1 || c.Checkout.Queue < 1 || c.Checkout.BatchMaxWait <= 0:
		return fmt.Errorf("config: BATCH_MAX_SIZE, BATCH_WORKERS and CHECKOUT_QUEUE must be at least 1, BATCH_MAX_WAIT positive")
	case c.Checkout.Timeout <= 0:
		return fmt.Errorf("config: CHECKOUT_TIMEOUT must be positive")
	case c.Checkout.ActionHoldTTL <= 0 || c.Checkout.ActionHoldTTL > c.Checkout.ReservationTTL:
		return fmt.Errorf("config: ACTION_HOLD_TTL must be positive and at most RESERVATION_TTL")
	case c.Checkout.RebalanceTarget <= c.Checkout.RebalanceLow:
		return fmt.Errorf("config: REBALANCE_TARGET must be above REBALANCE_LOW")
	case c.Checkout.RebalanceWarehouse == "" || len(c.Checkout.RebalanceWarehouse) > 64:
		return fmt.Errorf("config: REBALANCE_WAREHOUSE must be a warehouse name of 1 to 64 characters")
	case c.Checkout.FailedPaymentWindow <= 0:
		return fmt.Errorf("config: CHECKOUT_FAILED_PAYMENT_WINDOW must be positive")
	case !slices.Contains([]string{"off", "allow", "require"}, c.GraphQL.PersistedQueries):
		return fmt.Errorf("config: PERSISTED_QUERIES must be off, allow or require")
	case c.GraphQL.PersistedQueries == "require" && c.GraphQL.Manifest == "":
		return fmt.Errorf("config: PERSISTED_QUERIES=require needs PERSISTED_QUERIES_MANIFEST")
	case !slices.Contains([]string{"parquet", "elasticsearch", "bigquery", "off"}, c.Analytics.Sink):
		return fmt.Errorf("config: ANALYTICS_SINK must be parquet, elasticsearch, bigquery or off")
	case c.Relay.Linger < 0 || c.Relay.Linger > time.Second:
		// A wake-up waits this long before each claim: past a second it is a poll.
		return fmt.Errorf("config: OUTBOX_LINGER must be between 0 and 1s")
	case c.Analytics.Sink == "elasticsearch" && len(c.Analytics.ElasticsearchURLs) == 0:
		return fmt.Errorf("config: ELASTICSEARCH_URLS is required with ANALYTICS_SINK=elasticsearch")
	case c.Analytics.Sink == "bigquery" && c.Analytics.BigQueryProject == "":
		return fmt.Errorf("config: BIGQUERY_PROJECT is required with ANALYTICS_SINK=bigquery")
	case !slices.Contains([]string{"none", "otlp", "console", "stdout"}, strings.ToLower(strings.TrimSpace(c.Telemetry.TracesExporter))):
		return fmt.Errorf("config: OTEL_TRACES_EXPORTER must be none, otlp or console")
	case !slices.Contains([]string{"", "http/protobuf"}, c.Telemetry.Protocol()):
		return fmt.Errorf("config: OTEL_EXPORTER_OTLP_PROTOCOL must be http/protobuf (port 4318), the one OTLP protocol built in")
	}
	for name, v := range map[string]int64{
		"DB_MAX_CONNS": int64(c.Database.MaxConns), "DB_CHECKOUT_CONNS": int64(c.Database.CheckoutConns),
		"DB_READ_CONNS": int64(c.Database.ReadConns), "OUTBOX_BATCH": int64(c.Relay.Batch),
		"OUTBOX_POLL_INTERVAL": int64(c.Relay.PollInterval), "OUTBOX_RETENTION": int64(c.Relay.Retention),
		"WORKER_PREFETCH": int64(c.Workers.Prefetch), "WORKER_CONCURRENCY": int64(c.Workers.Concurrency),
		"SWEEP_INTERVAL": int64(c.Workers.SweepInterval), "SHUTDOWN_TIMEOUT": int64(c.HTTP.ShutdownTimeout),
		"HTTP_WRITE_TIMEOUT": int64(c.HTTP.WriteTimeout), "HTTP_BODY_TIMEOUT": int64(c.HTTP.BodyTimeout),
		"GRAPHQL_MAX_COMPLEXITY": int64(c.GraphQL.MaxComplexity), "GRAPHQL_MAX_DEPTH": int64(c.GraphQL.MaxDepth),
		"GRAPHQL_MAX_ALIASES": int64(c.GraphQL.MaxAliases), "GRAPHQL_MAX_ROOT_FIELDS": int64(c.GraphQL.MaxRootFields),
		"GRAPHQL_MAX_BODY_BYTES": c.GraphQL.MaxBodyBytes, "GRAPHQL_MAX_TOKENS": int64(c.GraphQL.MaxTokens),
		"APQ_MAX_QUERY_BYTES": int64(c.GraphQL.APQMaxQueryBytes), "APQ_MAX_ENTRIES": int64(c.GraphQL.APQMaxEntries),
		"APQ_MAX_ENTRIES_PER_CLIENT": int64(c.GraphQL.APQMaxEntriesPerClient),
		"APQ_TTL":                    int64(c.GraphQL.APQTTL), "SOCKET_INIT_TIMEOUT": int64(c.Sockets.InitTimeout),
		"SOCKET_PING_INTERVAL": int64(c.Sockets.PingInterval), "SOCKET_WRITE_TIMEOUT": int64(c.Sockets.WriteTimeout),
		"CHECKOUT_CONCURRENCY": int64(c.Overload.CheckoutConcurrency), "READ_CONCURRENCY": int64(c.Overload.ReadConcurrency),
		"OTHER_CONCURRENCY": int64(c.Overload.OtherConcurrency), "OVERLOAD_MAX_WAIT": int64(c.Overload.MaxWait),
		"ANALYTICS_BATCH": int64(c.Analytics.Batch), "ANALYTICS_FLUSH_INTERVAL": int64(c.Analytics.FlushInterval),
		"WEBHOOK_BACKOFF_BASE": int64(c.Webhooks.BackoffBase), "WEBHOOK_MAX_AGE": int64(c.Webhooks.MaxAge),
		"WEBHOOK_DISABLE_AFTER": int64(c.Webhooks.DisableAfter), "RESERVATION_TTL": int64(c.Checkout.ReservationTTL),
		"CLIENT_BUCKETS": int64(c.Overload.ClientBuckets), "CLIENT_ANONYMOUS_BUCKETS": int64(c.Overload.AnonymousBuckets),
		"JWT_MAX_LIFETIME": int64(c.Auth.MaxLifetime), "REBALANCE_LOW": int64(c.Checkout.RebalanceLow),
		"REBALANCE_INTERVAL": int64(c.Checkout.RebalanceInterval), "REBALANCE_REASK": int64(c.Checkout.RebalanceReask),
		"REBALANCE_IDLE": int64(c.Checkout.RebalanceIdle),
	} {
		if v <= 0 {
			return fmt.Errorf("config: %s must be positive", name)
		}
	}
	for name, v := range map[string]int64{"WEBHOOK_MAX_ATTEMPTS": int64(c.Webhooks.MaxAttempts),
		"SOCKETS_PER_CLIENT": int64(c.Sockets.PerClient), "SUBSCRIPTIONS_PER_CLIENT": int64(c.Sockets.SubscriptionsPerClient),
		"CLIENT_BURST": int64(c.Overload.ClientBurst), "CHECKOUT_BURST": int64(c.Overload.CheckoutBurst),
		"CHECKOUT_MAX_UNPAID_ORDERS": int64(c.Checkout.MaxUnpaidOrders), "CHECKOUT_MAX_FAILED_PAYMENTS": int64(c.Checkout.MaxFailedPayments),
		"BODIES_PER_CLIENT": int64(c.Overload.BodiesPerClient)} {
		if v < 0 {
			return fmt.Errorf("config: %s must not be negative", name)
		}
	}
	if c.Overload.StripeWebhookRate <= 0 {
		return fmt.Errorf("config: STRIPE_WEBHOOK_RATE must be positive")
	}
	if c.Overload.ClientRate < 0 {
		return fmt.Errorf("config: CLIENT_RATE must not be negative")
	}
	if c.Overload.CheckoutRate < 0 {
		return fmt.Errorf("config: CHECKOUT_RATE must not be negative")
	}
	if p := c.Overload.ClientIPv6Prefix; p < 16 || p > 128 {
		return fmt.Errorf("config: CLIENT_IPV6_PREFIX must be 16 to 128 (bits of an IPv6 address; 64 is a host)")
	}
	if len(c.Workers.RetryDelays) == 0 || slices.ContainsFunc(c.Workers.RetryDelays, func(d time.Duration) bool { return d <= 0 }) {
		return fmt.Errorf("config: WORKER_RETRY_DELAYS must be one or more positive durations")
	}
	return nil
}

// productionProblems lists, one line each, the settings production refuses.
func (c Config) productionProblems() error {
	var errs []error
	refuse := func(format string, args ...any) { errs = append(errs, fmt.Errorf("config: "+format, args...)) }
	if c.Auth.JWTSecret == DevJWTSecret {
		refuse("JWT_SECRET must be set in production")
	}
	if c.Payment.Provider == "sandbox" {
		refuse("the sandbox payment provider cannot run in production")
	}
	if c.Payment.Provider == "stripe" && c.Payment.StripeWebhookSecret == "" {
		// A charge whose answer was lost after its order expired is only reconciled by
		// the webhook.
		refuse("STRIPE_WEBHOOK_SECRET is required with PAYMENT_PROVIDER=stripe in production")
	}
	if c.Webhooks.AllowPrivate {
		refuse("WEBHOOK_ALLOW_PRIVATE=true lets partner webhooks reach loopback and private networks: not in production")
	}
	if c.GraphQL.Introspection != nil && *c.GraphQL.Introspection {
		refuse("GRAPHQL_INTROSPECTION=true publishes the whole schema: not in production")
	}
	if c.Debug.Pprof {
		refuse("CHECKOUT_PPROF=1 serves the process's profiles: not in production")
	}
	if u, err := url.Parse(c.Payment.StripeAPIBase); c.Payment.StripeAPIBase != "" && (err != nil || !strings.EqualFold(u.Scheme, "https")) {
		refuse("STRIPE_API_BASE must be an https:// URL in production")
	}
	if c.Webhooks.SecretKey == "" {
		refuse("WEBHOOK_SECRET_KEY must be set in production: without it partner signing secrets are stored in clear")
	}
	if c.Auth.Issuer == "" || c.Auth.Audience == "" {
		refuse("JWT_ISSUER and JWT_AUDIENCE must be set in production: a token minted by another issuer or for another service with the same secret would be accepted")
	}
	if m := c.HTTP.MetricsAddr; m == "" || m == c.HTTP.Addr {
		refuse("METRICS_ADDR must be set in production, apart from HTTP_ADDR: /metrics (revenue, order counts) stays off the public listener")
	}
	c.plaintextProblems(refuse)
	for _, node := range strings.Split(c.Broker.URL, ",") {
		if u, err := url.Parse(strings.TrimSpace(node)); err == nil && u.User != nil && u.User.Username() == "guest" {
			refuse("AMQP_URL logs in as RabbitMQ's guest user: give the service a user of its own in production")
			break
		}
	}
	return errors.Join(errs...)
}

// Introspection is GRAPHQL_INTROSPECTION when set, else true outside production.
func (c Config) Introspection() bool {
	if c.GraphQL.Introspection != nil {
		return *c.GraphQL.Introspection
	}
	return !c.Production()
}

// plaintextKinds are the words ALLOW_PLAINTEXT takes.
var plaintextKinds = []string{"http", "database", "amqp", "redis", "loki", "elasticsearch"}

// allowsPlaintext reports whether ALLOW_PLAINTEXT names kind (ALLOW_INSECURE_DATABASE
// is the older spelling of "database").
func (c Config) allowsPlaintext(kind string) bool {
	if kind == "database" && c.TLS.AllowInsecureDatabase {
		return true
	}
	for _, k := range c.TLS.AllowPlaintext {
		if strings.EqualFold(strings.TrimSpace(k), kind) {
			return true
		}
	}
	return false
}

// tlsProblems checks the TLS settings in any environment: pairs given together, the
// client policy, and files for a connection that would ignore them.
func (c Config) tlsProblems() error {
	for _, k := range c.TLS.AllowPlaintext {
		if !slices.Contains(plaintextKinds, strings.ToLower(strings.TrimSpace(k))) {
			return fmt.Errorf("config: ALLOW_PLAINTEXT takes %s, not %q", strings.Join(plaintextKinds, ", "), k)
		}
	}
	t, b, r := c.TLS, c.Broker, c.Redis
	switch {
	case (t.CertFile == "") != (t.KeyFile == ""):
		return fmt.Errorf("config: TLS_CERT_FILE and TLS_KEY_FILE go together")
	case t.ClientCAFile != "" && t.CertFile == "":
		return fmt.Errorf("config: TLS_CLIENT_CA_FILE needs TLS_CERT_FILE and TLS_KEY_FILE (client certificates are asked for in a TLS handshake)")
	case t.ClientAuth != "" && t.ClientAuth != "require" && t.ClientAuth != "optional":
		return fmt.Errorf("config: TLS_CLIENT_AUTH must be require or optional")
	case len(t.PartnerClients) > 0 && t.ClientCAFile == "":
		return fmt.Errorf("config: TLS_PARTNER_CLIENTS needs TLS_CLIENT_CA_FILE, the CA that verifies partner certificates")
	case (b.CertFile == "") != (b.KeyFile == ""):
		return fmt.Errorf("config: AMQP_TLS_CERT_FILE and AMQP_TLS_KEY_FILE go together")
	case (r.CertFile == "") != (r.KeyFile == ""):
		return fmt.Errorf("config: REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE go together")
	case b.CAFile+b.CertFile != "" && !allSchemes(b.URL, "amqps"):
		return fmt.Errorf("config: AMQP_TLS_* files are set but AMQP_URL is not amqps://")
	case r.CAFile+r.CertFile != "" && !allSchemes(r.URL, "rediss"):
		return fmt.Errorf("config: REDIS_TLS_* files are set but REDIS_URL is not rediss://")
	}
	return nil
}

// allSchemes reports whether every URL of a comma-separated list has scheme.
func allSchemes(urls, scheme string) bool {
	if strings.TrimSpace(urls) == "" {
		return false
	}
	for _, s := range strings.Split(urls, ",") {
		u, err := url.Parse(strings.TrimSpace(s))
		if err != nil || !strings.EqualFold(u.Scheme, scheme) {
			return false
		}
	}
	return true
}

// plaintextProblems are production's refusals of connections that are not encrypted or
// whose server is not verified, one line each, each with the ALLOW_PLAINTEXT word that
// accepts it.
func (c Config) plaintextProblems(refuse func(format string, args ...any)) {
	if c.TLS.CertFile == "" && !c.allowsPlaintext("http") {
		refuse("HTTP_ADDR serves plain HTTP: set TLS_CERT_FILE and TLS_KEY_FILE (ALLOW_PLAINTEXT=http behind a proxy that terminates TLS)")
	}
	if mode, local := databaseSSLMode(c.Database.URL); !local && mode != "verify-full" && mode != "verify-ca" && !c.allowsPlaintext("database") {
		refuse("DATABASE_URL has sslmode=%s, so the server is not verified: use sslmode=verify-full with sslrootcert (ALLOW_PLAINTEXT=database if it never leaves the host)", mode)
	}
	if mode, local := databaseSSLMode(c.Database.ReadURL); c.Database.ReadURL != "" && !local && mode != "verify-full" && mode != "verify-ca" && !c.allowsPlaintext("database") {
		refuse("DATABASE_READ_URL has sslmode=%s, so the replica is not verified: use sslmode=verify-full with sslrootcert (ALLOW_PLAINTEXT=database if it never leaves the host)", mode)
	}
	if mode, local := databaseSSLMode(c.Database.SessionURL); c.Database.SessionURL != "" && !local && mode != "verify-full" && mode != "verify-ca" && !c.allowsPlaintext("database") {
		refuse("DATABASE_SESSION_URL has sslmode=%s, so the server is not verified: use sslmode=verify-full with sslrootcert (ALLOW_PLAINTEXT=database if it never leaves the host)", mode)
	}
	if c.Logs.LokiURL != "" && !allSchemes(c.Logs.LokiURL, "https") && !c.allowsPlaintext("loki") {
		refuse("LOKI_URL is not https://, so the log lines leave unencrypted (ALLOW_PLAINTEXT=loki if it never leaves the host)")
	}
	if c.Analytics.Sink == "elasticsearch" && !allSchemes(strings.Join(c.Analytics.ElasticsearchURLs, ","), "https") && !c.allowsPlaintext("elasticsearch") {
		refuse("ELASTICSEARCH_URLS has a node that is not https://, so the facts and ELASTICSEARCH_API_KEY travel unencrypted (ALLOW_PLAINTEXT=elasticsearch if it never leaves the host)")
	}
	if !allSchemes(c.Broker.URL, "amqps") && !c.allowsPlaintext("amqp") {
		refuse("AMQP_URL is not amqps://, so RabbitMQ traffic is not encrypted (ALLOW_PLAINTEXT=amqp if it never leaves the host)")
	}
	if c.Redis.URL != "" && !allSchemes(c.Redis.URL, "rediss") && !c.allowsPlaintext("redis") {
		refuse("REDIS_URL is not rediss://, so Redis traffic is not encrypted (ALLOW_PLAINTEXT=redis if it never leaves the host)")
	}
}

// databaseSSLMode is the sslmode pgx would use for dsn (a URL or key=value pairs; else
// PGSSLMODE, libpq's variable, which pgx reads too; else pgx's default, prefer), and
// whether every host is a Unix socket (traffic that never leaves the host).
func databaseSSLMode(dsn string) (mode string, local bool) {
	var hosts []string
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		mode = u.Query().Get("sslmode")
		if h := u.Query().Get("host"); h != "" {
			hosts = append(hosts, h)
		} else if u.Host != "" {
			hosts = append(hosts, u.Host)
		}
	} else {
		for _, f := range strings.Fields(dsn) {
			k, v, ok := strings.Cut(f, "=")
			switch v = strings.Trim(v, "'"); {
			case !ok:
			case strings.EqualFold(k, "sslmode"):
				mode = v
			case strings.EqualFold(k, "host"):
				hosts = append(hosts, v)
			}
		}
	}
	if mode == "" {
		mode = os.Getenv("PGSSLMODE")
	}
	if mode == "" {
		mode = "prefer"
	}
	local = len(hosts) > 0
	for _, h := range hosts {
		for _, one := range strings.Split(h, ",") {
			if !strings.HasPrefix(one, "/") {
				local = false
			}
		}
	}
	return strings.ToLower(mode), local
}
