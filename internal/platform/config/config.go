// Package config reads the service's configuration from the environment (the names of
// ../shared/API.md), with development defaults.
package config

import (
	"fmt"
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

	PaymentProvider     string `env:"PAYMENT_PROVIDER" envDefault:"sandbox"`
	StripeSecretKey     string `env:"STRIPE_SECRET_KEY"`
	StripeAPIBase       string `env:"STRIPE_API_BASE"`
	StripeWebhookSecret string `env:"STRIPE_WEBHOOK_SECRET"`

	WebhookAllowPrivate bool          `env:"WEBHOOK_ALLOW_PRIVATE" envDefault:"false"`
	WebhookBackoffBase  time.Duration `env:"WEBHOOK_BACKOFF_BASE" envDefault:"10s"`
	// WebhookMaxAge is how long a delivery is retried before it is dead-lettered.
	WebhookMaxAge time.Duration `env:"WEBHOOK_MAX_AGE" envDefault:"24h"`
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
	WorkerPrefetch    int           `env:"WORKER_PREFETCH" envDefault:"16"`
	WorkerConcurrency int           `env:"WORKER_CONCURRENCY" envDefault:"8"`
	// AMQPPrefix prefixes exchange and queue names (several deployments on one broker).
	AMQPPrefix string `env:"AMQP_PREFIX"`
	// RetryDelays are the consumers' retry delays, growing; after the last, dead letter.
	RetryDelays []time.Duration `env:"WORKER_RETRY_DELAYS" envSeparator:"," envDefault:"1s,4s,15s,30s,1m,2m,4m,4m"`

	// GraphQL over HTTP (internal/platform/gqlhttp; docs/storefront.md).
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
	CheckoutConcurrency int           `env:"CHECKOUT_CONCURRENCY" envDefault:"16"`
	ReadConcurrency     int           `env:"READ_CONCURRENCY" envDefault:"64"`
	OtherConcurrency    int           `env:"OTHER_CONCURRENCY" envDefault:"32"`
	OverloadMaxWait     time.Duration `env:"OVERLOAD_MAX_WAIT" envDefault:"100ms"`
	ClientRate          float64       `env:"CLIENT_RATE" envDefault:"50"`
	ClientBurst         int           `env:"CLIENT_BURST" envDefault:"100"`

	// GraphQLIntrospection unset: on in development, off in production.
	GraphQLIntrospection *bool `env:"GRAPHQL_INTROSPECTION"`
}

// Production reports whether APP_ENV is production.
func (c Config) Production() bool { return c.Env == "production" }

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
	case c.Production() && c.PaymentProvider == "sandbox":
		return fmt.Errorf("config: the sandbox payment provider cannot run in production")
	}
	return nil
}
