// Package config reads the service's configuration from the environment (the names of
// ../shared/API.md), with development defaults.
package config

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

// Config is the whole configuration.
type Config struct {
	Env      string `env:"APP_ENV" envDefault:"development"`
	HTTPAddr string `env:"HTTP_ADDR" envDefault:":8080"`

	DatabaseURL string `env:"DATABASE_URL" envDefault:"postgres://postgres@127.0.0.1:5432/checkout?sslmode=disable"`
	// --- high availability (issue 13) ---
	// DatabaseReadURL, when set, serves the catalog's reads (products, stock levels) from
	// a replica, which may lag; checkout, payment and every write stay on DATABASE_URL.
	DatabaseReadURL string `env:"DATABASE_READ_URL"`
	// AMQPQuorumSize is the quorum queues' replication factor when they are created
	// (x-quorum-initial-group-size); RabbitMQ caps it at the cluster's size.
	AMQPQuorumSize int `env:"AMQP_QUORUM_SIZE" envDefault:"3"`
	// --- end high availability ---
	DBMaxConns int `env:"DB_MAX_CONNS" envDefault:"20"`
	// DBCheckoutConns and DBReadConns are the API's own pool budgets: checkout (and the
	// other writes of the API) and catalog reads cannot take each other's connections,
	// nor the relay's and workers' (DB_MAX_CONNS).
	DBCheckoutConns int           `env:"DB_CHECKOUT_CONNS" envDefault:"16"`
	DBReadConns     int           `env:"DB_READ_CONNS" envDefault:"8"`
	AMQPURL         string        `env:"AMQP_URL" envDefault:"amqp://guest:guest@127.0.0.1:5672/"`
	RedisURL        string        `env:"REDIS_URL"`
	JWTSecret       string        `env:"JWT_SECRET" envDefault:"dev-secret-change-me-0123456789abcdef"`
	ReservationTTL  time.Duration `env:"RESERVATION_TTL" envDefault:"10m"`

	// Reservation strategy (README "Reservation strategies"): batch, lock, optimistic or
	// redis; the batch strategy's group commit; the checkouts that may wait for a batch
	// (past it: 503) and each checkout's deadline.
	ReservationStrategy string        `env:"RESERVATION_STRATEGY" envDefault:"batch"`
	BatchMaxSize        int           `env:"BATCH_MAX_SIZE" envDefault:"64"`
	BatchMaxWait        time.Duration `env:"BATCH_MAX_WAIT" envDefault:"1ms"`
	BatchWorkers        int           `env:"BATCH_WORKERS" envDefault:"4"`
	CheckoutQueue       int           `env:"CHECKOUT_QUEUE" envDefault:"4096"`
	CheckoutTimeout     time.Duration `env:"CHECKOUT_TIMEOUT" envDefault:"10s"`

	PaymentProvider     string `env:"PAYMENT_PROVIDER" envDefault:"sandbox"`
	StripeSecretKey     string `env:"STRIPE_SECRET_KEY"`
	StripeAPIBase       string `env:"STRIPE_API_BASE"`
	StripeWebhookSecret string `env:"STRIPE_WEBHOOK_SECRET"`

	WebhookAllowPrivate bool          `env:"WEBHOOK_ALLOW_PRIVATE" envDefault:"false"`
	WebhookBackoffBase  time.Duration `env:"WEBHOOK_BACKOFF_BASE" envDefault:"10s"`
	// WebhookMaxAge is how long a delivery is retried before it is dead-lettered.
	WebhookMaxAge time.Duration `env:"WEBHOOK_MAX_AGE" envDefault:"24h"`
	// WebhookMaxAttempts, when positive, also ends a delivery after that many attempts.
	WebhookMaxAttempts int `env:"WEBHOOK_MAX_ATTEMPTS" envDefault:"0"`
	// WebhookDisableAfter consecutive failed attempts disable an endpoint.
	WebhookDisableAfter int `env:"WEBHOOK_DISABLE_AFTER" envDefault:"50"`

	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"20s"`

	// Outbox relay, workers and sweeper.
	OutboxPoll      time.Duration `env:"OUTBOX_POLL_INTERVAL" envDefault:"1s"`
	OutboxBatch     int           `env:"OUTBOX_BATCH" envDefault:"100"`
	OutboxRetention time.Duration `env:"OUTBOX_RETENTION" envDefault:"72h"`
	SweepInterval   time.Duration `env:"SWEEP_INTERVAL" envDefault:"5s"`
	// KeyRetention is how long idempotency keys and inbox rows are kept (>= 24h).
	KeyRetention      time.Duration `env:"IDEMPOTENCY_RETENTION" envDefault:"168h"`
	WorkerPrefetch    int           `env:"WORKER_PREFETCH" envDefault:"128"`
	WorkerConcurrency int           `env:"WORKER_CONCURRENCY" envDefault:"64"`
	// AMQPPrefix prefixes exchange and queue names (several deployments on one broker).
	AMQPPrefix string `env:"AMQP_PREFIX"`
	// RetryDelays are the consumers' retry delays, growing; after the last, dead letter.
	RetryDelays []time.Duration `env:"WORKER_RETRY_DELAYS" envSeparator:"," envDefault:"1s,4s,15s,30s,1m,2m,4m,4m"`

	// GraphQL over HTTP (graph/gqlhttp; README "Storefronts and mobile apps").
	// PersistedQueries is off, allow (automatic persisted queries and the manifest's
	// hashes) or require (only the manifest's operations run).
	PersistedQueries         string   `env:"PERSISTED_QUERIES" envDefault:"allow"`
	PersistedQueriesManifest string   `env:"PERSISTED_QUERIES_MANIFEST"`
	CORSAllowedOrigins       []string `env:"CORS_ALLOWED_ORIGINS" envSeparator:","`
	GraphQLMaxComplexity     int      `env:"GRAPHQL_MAX_COMPLEXITY" envDefault:"5000"`
	GraphQLMaxDepth          int      `env:"GRAPHQL_MAX_DEPTH" envDefault:"12"`
	GraphQLMaxAliases        int      `env:"GRAPHQL_MAX_ALIASES" envDefault:"30"`
	GraphQLMaxRootFields     int      `env:"GRAPHQL_MAX_ROOT_FIELDS" envDefault:"10"`
	GraphQLMaxBodyBytes      int64    `env:"GRAPHQL_MAX_BODY_BYTES" envDefault:"1048576"`
	// Load shedding (internal/platform/overload): requests served at once per class,
	// the wait for a slot before 503, and each client's rate (requests/s) and burst
	// before 429. CLIENT_RATE=0 turns the per-client limit off.
	CheckoutConcurrency int           `env:"CHECKOUT_CONCURRENCY" envDefault:"2048"`
	ReadConcurrency     int           `env:"READ_CONCURRENCY" envDefault:"64"`
	OtherConcurrency    int           `env:"OTHER_CONCURRENCY" envDefault:"32"`
	OverloadMaxWait     time.Duration `env:"OVERLOAD_MAX_WAIT" envDefault:"100ms"`
	ClientRate          float64       `env:"CLIENT_RATE" envDefault:"50"`
	ClientBurst         int           `env:"CLIENT_BURST" envDefault:"100"`

	// GraphQLIntrospection unset: on in development, off in production.
	GraphQLIntrospection *bool `env:"GRAPHQL_INTROSPECTION"`

	// The edge (README "Security"): listeners, client addresses, sockets, persisted
	// queries, webhook secrets, and what production refuses.
	Edge
	// --- analytics and log shipping (issue 14; README "Analytics and logs") ---
	// AnalyticsSink is parquet (files under ANALYTICS_DIR), elasticsearch, bigquery
	// (Parquet files under ANALYTICS_DIR, each loaded by a load job) or off.
	AnalyticsSink          string        `env:"ANALYTICS_SINK" envDefault:"parquet"`
	AnalyticsDir           string        `env:"ANALYTICS_DIR" envDefault:"analytics-data"`
	AnalyticsBatch         int           `env:"ANALYTICS_BATCH" envDefault:"500"`
	AnalyticsFlushInterval time.Duration `env:"ANALYTICS_FLUSH_INTERVAL" envDefault:"5s"`
	ElasticsearchURLs      []string      `env:"ELASTICSEARCH_URLS" envSeparator:","`
	ElasticsearchAPIKey    string        `env:"ELASTICSEARCH_API_KEY"`
	ElasticsearchIndex     string        `env:"ELASTICSEARCH_INDEX_PREFIX" envDefault:"checkout"`
	BigQueryProject        string        `env:"BIGQUERY_PROJECT"`
	BigQueryDataset        string        `env:"BIGQUERY_DATASET" envDefault:"checkout"`
	// BigQueryEndpoint overrides the API endpoint (an emulator); credentials come from
	// Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS).
	BigQueryEndpoint string `env:"BIGQUERY_ENDPOINT"`
	// LokiURL turns log shipping on (http://loki:3100); LokiTenant is X-Scope-OrgID.
	LokiURL    string `env:"LOKI_URL"`
	LokiTenant string `env:"LOKI_TENANT"`
	// --- end analytics and log shipping ---

	// TLS (README "Security", "TLS"): the HTTPS listener, client certificates, the
	// connections to RabbitMQ and Redis, and the plain-text connections production allows.
	TLS
}

// Edge is the configuration of the service's edge.
type Edge struct {
	// MetricsAddr, when set, serves GET /metrics there and not on HTTP_ADDR.
	MetricsAddr string `env:"METRICS_ADDR"`
	// HTTPWriteTimeout bounds the writing of one HTTP response (sockets have their own).
	HTTPWriteTimeout time.Duration `env:"HTTP_WRITE_TIMEOUT" envDefault:"30s"`
	// TrustedProxies are the reverse proxies (CIDR prefixes or addresses) whose
	// ClientIPHeader names the client; from anyone else the header is ignored.
	TrustedProxies []string `env:"TRUSTED_PROXIES" envSeparator:","`
	ClientIPHeader string   `env:"CLIENT_IP_HEADER" envDefault:"X-Forwarded-For"`
	// GraphQLMaxTokens caps the lexical tokens of a document, counted before parsing.
	GraphQLMaxTokens int `env:"GRAPHQL_MAX_TOKENS" envDefault:"10000"`
	// Sockets: connection_init timeout, ping interval, write timeout, and per-client caps
	// (0: no cap).
	SocketInitTimeout      time.Duration `env:"SOCKET_INIT_TIMEOUT" envDefault:"5s"`
	SocketPingInterval     time.Duration `env:"SOCKET_PING_INTERVAL" envDefault:"15s"`
	SocketWriteTimeout     time.Duration `env:"SOCKET_WRITE_TIMEOUT" envDefault:"10s"`
	SocketsPerClient       int           `env:"SOCKETS_PER_CLIENT" envDefault:"64"`
	SubscriptionsPerClient int           `env:"SUBSCRIPTIONS_PER_CLIENT" envDefault:"100"`
	// Automatic persisted queries (allow mode): the largest text stored, how many are
	// stored per APQ_TTL window, and how long one is kept.
	APQMaxQueryBytes int           `env:"APQ_MAX_QUERY_BYTES" envDefault:"16384"`
	APQMaxEntries    int           `env:"APQ_MAX_ENTRIES" envDefault:"2000"`
	APQTTL           time.Duration `env:"APQ_TTL" envDefault:"24h"`
	// WebhookSecretKey seals webhook signing secrets at rest: "<id>:<base64 32 bytes>",
	// comma separated, the first sealing (internal/webhook.NewSealer).
	WebhookSecretKey string `env:"WEBHOOK_SECRET_KEY"`
	// AllowInsecureDatabase is the older spelling of ALLOW_PLAINTEXT=database.
	AllowInsecureDatabase bool `env:"ALLOW_INSECURE_DATABASE"`
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

// Load reads and checks the configuration.
func Load() (Config, error) {
	var c Config
	if err := env.Parse(&c); err != nil {
		return c, fmt.Errorf("config: %w", err)
	}
	return c, c.Validate()
}

// Validate checks values that would make the service misbehave.
func (c Config) Validate() error {
	switch {
	case len(c.JWTSecret) < 32:
		return fmt.Errorf("config: JWT_SECRET must be at least 32 bytes")
	case c.Production() && c.JWTSecret == DevJWTSecret:
		return fmt.Errorf("config: JWT_SECRET must be set in production")
	case c.KeyRetention < 24*time.Hour:
		return fmt.Errorf("config: IDEMPOTENCY_RETENTION must be at least 24h (the contract keeps keys 24 hours)")
	case c.AMQPQuorumSize < 1:
		return fmt.Errorf("config: AMQP_QUORUM_SIZE must be at least 1")
	case c.ReservationTTL <= 0:
		return fmt.Errorf("config: RESERVATION_TTL must be positive")
	case c.PaymentProvider != "sandbox" && c.PaymentProvider != "stripe":
		return fmt.Errorf("config: PAYMENT_PROVIDER must be sandbox or stripe")
	case c.PaymentProvider == "stripe" && c.StripeSecretKey == "":
		return fmt.Errorf("config: STRIPE_SECRET_KEY is required with PAYMENT_PROVIDER=stripe")
	case c.Production() && c.PaymentProvider == "stripe" && c.StripeWebhookSecret == "":
		// A charge whose answer was lost after its order expired is only reconciled by
		// the webhook.
		return fmt.Errorf("config: STRIPE_WEBHOOK_SECRET is required with PAYMENT_PROVIDER=stripe in production")
	case c.Production() && c.PaymentProvider == "sandbox":
		return fmt.Errorf("config: the sandbox payment provider cannot run in production")
	case c.ReservationStrategy != "batch" && c.ReservationStrategy != "lock" && c.ReservationStrategy != "optimistic" && c.ReservationStrategy != "redis":
		return fmt.Errorf("config: RESERVATION_STRATEGY must be batch, lock, optimistic or redis")
	case c.ReservationStrategy == "redis" && c.RedisURL == "":
		return fmt.Errorf("config: RESERVATION_STRATEGY=redis needs REDIS_URL")
	case c.BatchMaxSize < 1 || c.BatchWorkers < 1 || c.CheckoutQueue < 1 || c.BatchMaxWait <= 0:
		return fmt.Errorf("config: BATCH_MAX_SIZE, BATCH_WORKERS and CHECKOUT_QUEUE must be at least 1, BATCH_MAX_WAIT positive")
	case c.CheckoutTimeout <= 0:
		return fmt.Errorf("config: CHECKOUT_TIMEOUT must be positive")
	}
	if err := c.tlsProblems(); err != nil {
		return err
	}
	if c.Production() {
		return c.productionProblems()
	}
	return nil
}

// productionProblems lists, one line each, the settings production refuses.
func (c Config) productionProblems() error {
	var errs []error
	refuse := func(format string, args ...any) { errs = append(errs, fmt.Errorf("config: "+format, args...)) }
	if c.WebhookAllowPrivate {
		refuse("WEBHOOK_ALLOW_PRIVATE=true lets partner webhooks reach loopback and private networks: not in production")
	}
	if c.GraphQLIntrospection != nil && *c.GraphQLIntrospection {
		refuse("GRAPHQL_INTROSPECTION=true publishes the whole schema: not in production")
	}
	if u, err := url.Parse(c.StripeAPIBase); c.StripeAPIBase != "" && (err != nil || !strings.EqualFold(u.Scheme, "https")) {
		refuse("STRIPE_API_BASE must be an https:// URL in production")
	}
	c.plaintextProblems(refuse)
	if u, err := url.Parse(c.AMQPURL); err == nil && u.User != nil && u.User.Username() == "guest" {
		refuse("AMQP_URL logs in as RabbitMQ's guest user: give the service a user of its own in production")
	}
	return errors.Join(errs...)
}

// ---- TLS (issue 12, part 2): settings and production's plain-text refusals ----

// TLS is the configuration of TLS in and out of the service.
type TLS struct {
	// CertFile and KeyFile turn HTTPS on (every listener: HTTP_ADDR and METRICS_ADDR);
	// they are loaded again on the next handshake after they change.
	CertFile string `env:"TLS_CERT_FILE"`
	KeyFile  string `env:"TLS_KEY_FILE"`
	// ClientCAFile, when set, makes the listeners ask for client certificates chaining
	// to it: ClientAuth "require" (no certificate, no handshake) or "optional" (verified
	// when given).
	ClientCAFile string `env:"TLS_CLIENT_CA_FILE"`
	ClientAuth   string `env:"TLS_CLIENT_AUTH" envDefault:"require"`
	// PartnerClients are the client certificate identities that authenticate partners
	// (auth.PartnerCerts: a URI SAN, dns:NAME or cn:NAME).
	PartnerClients []string `env:"TLS_PARTNER_CLIENTS" envSeparator:","`
	// AMQP* and Redis* verify the amqps:// and rediss:// servers (CA) and are the
	// client certificate presented to them.
	AMQPCAFile    string `env:"AMQP_TLS_CA_FILE"`
	AMQPCertFile  string `env:"AMQP_TLS_CERT_FILE"`
	AMQPKeyFile   string `env:"AMQP_TLS_KEY_FILE"`
	RedisCAFile   string `env:"REDIS_TLS_CA_FILE"`
	RedisCertFile string `env:"REDIS_TLS_CERT_FILE"`
	RedisKeyFile  string `env:"REDIS_TLS_KEY_FILE"`
	// AllowPlaintext lists the connections production may leave unencrypted or
	// unverified: http (a proxy terminates TLS), database, amqp, redis.
	AllowPlaintext []string `env:"ALLOW_PLAINTEXT" envSeparator:","`
}

// plaintextKinds are the words ALLOW_PLAINTEXT takes.
var plaintextKinds = []string{"http", "database", "amqp", "redis"}

// allowsPlaintext reports whether ALLOW_PLAINTEXT names kind (ALLOW_INSECURE_DATABASE
// is the older spelling of "database").
func (c Config) allowsPlaintext(kind string) bool {
	if kind == "database" && c.AllowInsecureDatabase {
		return true
	}
	for _, k := range c.AllowPlaintext {
		if strings.EqualFold(strings.TrimSpace(k), kind) {
			return true
		}
	}
	return false
}

// tlsProblems checks the TLS settings in any environment: pairs given together, the
// client policy, and files for a connection that would ignore them.
func (c Config) tlsProblems() error {
	for _, k := range c.AllowPlaintext {
		if !slices.Contains(plaintextKinds, strings.ToLower(strings.TrimSpace(k))) {
			return fmt.Errorf("config: ALLOW_PLAINTEXT takes %s, not %q", strings.Join(plaintextKinds, ", "), k)
		}
	}
	switch {
	case (c.CertFile == "") != (c.KeyFile == ""):
		return fmt.Errorf("config: TLS_CERT_FILE and TLS_KEY_FILE go together")
	case c.ClientCAFile != "" && c.CertFile == "":
		return fmt.Errorf("config: TLS_CLIENT_CA_FILE needs TLS_CERT_FILE and TLS_KEY_FILE (client certificates are asked for in a TLS handshake)")
	case c.ClientAuth != "" && c.ClientAuth != "require" && c.ClientAuth != "optional":
		return fmt.Errorf("config: TLS_CLIENT_AUTH must be require or optional")
	case len(c.PartnerClients) > 0 && c.ClientCAFile == "":
		return fmt.Errorf("config: TLS_PARTNER_CLIENTS needs TLS_CLIENT_CA_FILE, the CA that verifies partner certificates")
	case (c.AMQPCertFile == "") != (c.AMQPKeyFile == ""):
		return fmt.Errorf("config: AMQP_TLS_CERT_FILE and AMQP_TLS_KEY_FILE go together")
	case (c.RedisCertFile == "") != (c.RedisKeyFile == ""):
		return fmt.Errorf("config: REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE go together")
	case c.AMQPCAFile+c.AMQPCertFile != "" && !allSchemes(c.AMQPURL, "amqps"):
		return fmt.Errorf("config: AMQP_TLS_* files are set but AMQP_URL is not amqps://")
	case c.RedisCAFile+c.RedisCertFile != "" && !allSchemes(c.RedisURL, "rediss"):
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
	if c.CertFile == "" && !c.allowsPlaintext("http") {
		refuse("HTTP_ADDR serves plain HTTP: set TLS_CERT_FILE and TLS_KEY_FILE (ALLOW_PLAINTEXT=http behind a proxy that terminates TLS)")
	}
	if mode, local := databaseSSLMode(c.DatabaseURL); !local && mode != "verify-full" && mode != "verify-ca" && !c.allowsPlaintext("database") {
		refuse("DATABASE_URL has sslmode=%s, so the server is not verified: use sslmode=verify-full with sslrootcert (ALLOW_PLAINTEXT=database if it never leaves the host)", mode)
	}
	if !allSchemes(c.AMQPURL, "amqps") && !c.allowsPlaintext("amqp") {
		refuse("AMQP_URL is not amqps://, so RabbitMQ traffic is not encrypted (ALLOW_PLAINTEXT=amqp if it never leaves the host)")
	}
	if c.RedisURL != "" && !allSchemes(c.RedisURL, "rediss") && !c.allowsPlaintext("redis") {
		refuse("REDIS_URL is not rediss://, so Redis traffic is not encrypted (ALLOW_PLAINTEXT=redis if it never leaves the host)")
	}
}

// databaseSSLMode is the sslmode pgx would use for dsn (a URL or key=value pairs; else
// PGSSLMODE; else pgx's default, prefer), and whether every host is a Unix socket
// (traffic that never leaves the host).
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
