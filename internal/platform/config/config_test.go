package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/checkout-backend/checkout/internal/platform/config"
)

// safeProduction is a production configuration that passes.
func safeProduction(env string) config.Config {
	c := config.Defaults()
	c.Env = env
	c.Auth.JWTSecret = strings.Repeat("s", 40)
	c.Payment = config.Payment{Provider: "stripe", StripeSecretKey: "sk_live_x", StripeAPIBase: "https://api.stripe.com", StripeWebhookSecret: "whsec_x"}
	c.Database.URL = "postgres://checkout@db:5432/checkout?sslmode=verify-full"
	c.Broker.URL = "amqps://checkout:pw@mq:5671/"
	c.TLS = config.TLS{CertFile: "/etc/tls/tls.crt", KeyFile: "/etc/tls/tls.key", ClientAuth: "require"}
	c.Webhooks.SecretKey = "k1:" + strings.Repeat("A", 43) + "="
	c.HTTP.MetricsAddr = "10.0.0.5:9464"
	c.Auth.Issuer, c.Auth.Audience = "https://auth.shop.example", "checkout"
	return c
}

func TestProduction_RecognisedWhateverTheSpelling(t *testing.T) {
	t.Parallel()
	for _, env := range []string{"production", "Production", "PROD", "prod", " production "} {
		if !(config.Config{Env: env}).Production() {
			t.Errorf("APP_ENV=%q is not production", env)
		}
	}
	for _, env := range []string{"development", "staging", "", "preprod"} {
		if (config.Config{Env: env}).Production() {
			t.Errorf("APP_ENV=%q is production", env)
		}
	}
}

// Production refuses each unsafe setting with one clear line, all of them at once.
func TestProduction_RefusesUnsafeSettings(t *testing.T) {
	t.Parallel()
	for _, env := range []string{"production", "PROD"} {
		if err := safeProduction(env).Validate(); err != nil {
			t.Fatalf("a safe production configuration (APP_ENV=%s): %v", env, err)
		}
	}
	yes := true
	for _, tc := range []struct {
		name   string
		change func(*config.Config)
		want   string
	}{
		{"private webhooks", func(c *config.Config) { c.Webhooks.AllowPrivate = true }, "WEBHOOK_ALLOW_PRIVATE"},
		{"introspection", func(c *config.Config) { c.GraphQL.Introspection = &yes }, "GRAPHQL_INTROSPECTION"},
		{"plain Stripe", func(c *config.Config) { c.Payment.StripeAPIBase = "http://stripe-mock:12111" }, "STRIPE_API_BASE"},
		{"unencrypted database", func(c *config.Config) { c.Database.URL = "postgres://u@db/checkout?sslmode=disable" }, "sslmode=disable"},
		{"unencrypted database DSN", func(c *config.Config) { c.Database.URL = "host=db user=u sslmode=disable" }, "sslmode=disable"},
		{"guest AMQP", func(c *config.Config) { c.Broker.URL = "amqps://guest:guest@mq:5671/" }, "guest"},
		{"Stripe without its webhook secret", func(c *config.Config) { c.Payment.StripeWebhookSecret = "" }, "STRIPE_WEBHOOK_SECRET"},
		{"profiles served", func(c *config.Config) { c.Debug.Pprof = true }, "CHECKOUT_PPROF"},
	} {
		for _, env := range []string{"production", "Prod"} {
			c := safeProduction(env)
			tc.change(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Count(err.Error(), "\n") != 0 {
				t.Errorf("%s (APP_ENV=%s): %v, want one line naming %s", tc.name, env, err, tc.want)
			}
			c.Env = "development"
			if err := c.Validate(); err != nil {
				t.Errorf("%s in development: %v", tc.name, err)
			}
		}
	}
	// All at once: one line each.
	c := safeProduction("production")
	c.Webhooks.AllowPrivate, c.GraphQL.Introspection, c.Broker.URL = true, &yes, "amqps://guest:guest@mq/"
	if err := c.Validate(); err == nil || len(strings.Split(err.Error(), "\n")) != 3 {
		t.Fatalf("three problems: %v", err)
	}
	// The database override is the one that makes sense.
	c = safeProduction("production")
	c.Database.URL, c.TLS.AllowInsecureDatabase = "postgres://u@localhost/checkout?sslmode=disable", true
	if err := c.Validate(); err != nil {
		t.Fatalf("ALLOW_INSECURE_DATABASE=true: %v", err)
	}
}

func TestLoad_EdgeSettings(t *testing.T) {
	t.Setenv("METRICS_ADDR", "127.0.0.1:9464")
	t.Setenv("TRUSTED_PROXIES", "10.0.0.0/8,192.0.2.1")
	t.Setenv("SOCKETS_PER_CLIENT", "3")
	c, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTP.MetricsAddr != "127.0.0.1:9464" || len(c.Overload.TrustedProxies) != 2 || c.Sockets.PerClient != 3 ||
		c.Sockets.InitTimeout != 5e9 || c.GraphQL.MaxTokens != 10000 || c.GraphQL.APQMaxEntries != 2000 || c.HTTP.WriteTimeout != 30e9 {
		t.Fatalf("%+v", c)
	}
}

// Production refuses every connection that is not encrypted and verified, one line each
// naming the ALLOW_PLAINTEXT word that accepts it; development accepts them all.
func TestProduction_RefusesPlainTextConnections(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		change func(*config.Config)
		want   string // in the refusal
		allow  string // the ALLOW_PLAINTEXT word that accepts it
	}{
		{"plain HTTP listener", func(c *config.Config) { c.TLS.CertFile, c.TLS.KeyFile = "", "" }, "TLS_CERT_FILE", "http"},
		{"database without sslmode (pgx: prefer)", func(c *config.Config) { c.Database.URL = "postgres://u@db/checkout" }, "sslmode=prefer", "database"},
		{"database sslmode=require (not verified)", func(c *config.Config) { c.Database.URL = "postgres://u@db/checkout?sslmode=require" }, "sslmode=require", "database"},
		{"database DSN sslmode=disable", func(c *config.Config) { c.Database.URL = "host=db user=u sslmode=disable" }, "sslmode=disable", "database"},
		{"amqp://", func(c *config.Config) { c.Broker.URL = "amqp://checkout:pw@mq:5672/" }, "AMQP_URL is not amqps://", "amqp"},
		{"one amqp:// in a cluster list", func(c *config.Config) { c.Broker.URL = "amqps://c:pw@mq1/,amqp://c:pw@mq2/" }, "AMQP_URL is not amqps://", "amqp"},
		{"redis://", func(c *config.Config) { c.Redis.URL = "redis://cache:6379/0" }, "REDIS_URL is not rediss://", "redis"},
		{"session URL beside a pooler, not verified", func(c *config.Config) {
			c.Database.PoolMode, c.Database.SessionURL = "transaction", "postgres://u@db/checkout?sslmode=require"
		}, "DATABASE_SESSION_URL has sslmode=require", "database"},
	} {
		c := safeProduction("production")
		tc.change(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "ALLOW_PLAINTEXT="+tc.allow) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v, want one line naming %s and ALLOW_PLAINTEXT=%s", tc.name, err, tc.want, tc.allow)
		}
		c.TLS.AllowPlaintext = []string{"redis", tc.allow}
		if err := c.Validate(); err != nil {
			t.Errorf("%s with ALLOW_PLAINTEXT=redis,%s: %v", tc.name, tc.allow, err)
		}
		c.TLS.AllowPlaintext = []string{"redis"}
		if tc.allow != "redis" && c.Validate() == nil {
			t.Errorf("%s: ALLOW_PLAINTEXT=redis accepted it", tc.name)
		}
		c = safeProduction("development")
		tc.change(&c)
		if err := c.Validate(); err != nil {
			t.Errorf("%s in development: %v", tc.name, err)
		}
	}
	for name, dsn := range map[string]string{
		"verify-full":             "postgres://u@db/checkout?sslmode=verify-full&sslrootcert=/etc/db-ca.pem",
		"verify-ca in a DSN":      "host=db user=u sslmode='verify-ca'",
		"a Unix socket":           "postgres:///checkout?host=/var/run/postgresql",
		"a Unix socket in a DSN":  "host=/var/run/postgresql dbname=checkout",
		"the older ALLOW flag, ✓": "postgres://u@localhost/checkout?sslmode=disable",
	} {
		c := safeProduction("production")
		c.Database.URL = dsn
		c.TLS.AllowInsecureDatabase = strings.HasSuffix(name, "✓")
		if err := c.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	c := safeProduction("production")
	c.TLS.AllowPlaintext = []string{"smtp"}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "ALLOW_PLAINTEXT") {
		t.Errorf("ALLOW_PLAINTEXT=smtp: %v", err)
	}
}

// The TLS settings that cannot work are refused in any environment.
func TestValidate_TLSSettingsThatCannotWork(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		change func(*config.Config)
		want   string
	}{
		{"certificate without key", func(c *config.Config) { c.TLS.KeyFile = "" }, "TLS_KEY_FILE"},
		{"client CA without a server certificate", func(c *config.Config) { c.TLS.CertFile, c.TLS.KeyFile, c.TLS.ClientCAFile = "", "", "/ca.pem" }, "TLS_CLIENT_CA_FILE"},
		{"unknown client policy", func(c *config.Config) { c.TLS.ClientCAFile, c.TLS.ClientAuth = "/ca.pem", "sometimes" }, "TLS_CLIENT_AUTH"},
		{"partners without a client CA", func(c *config.Config) { c.TLS.PartnerClients = []string{"cn:acme"} }, "TLS_PARTNER_CLIENTS"},
		{"AMQP files with amqp://", func(c *config.Config) { c.Broker.URL, c.Broker.CAFile = "amqp://u:p@mq/", "/ca.pem" }, "AMQP_TLS_"},
		{"AMQP certificate without key", func(c *config.Config) { c.Broker.CertFile = "/c.pem" }, "AMQP_TLS_KEY_FILE"},
		{"Redis files with redis://", func(c *config.Config) { c.Redis.URL, c.Redis.CAFile = "redis://cache/0", "/ca.pem" }, "REDIS_TLS_"},
		{"Redis files without REDIS_URL", func(c *config.Config) { c.Redis.CAFile = "/ca.pem" }, "REDIS_TLS_"},
	} {
		for _, env := range []string{"development", "production"} {
			c := safeProduction(env)
			tc.change(&c)
			if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s (%s): %v, want an error naming %s", tc.name, env, err, tc.want)
			}
		}
	}
}

func TestLoad_TLSSettings(t *testing.T) {
	t.Setenv("TLS_CERT_FILE", "/tls/s.crt")
	t.Setenv("TLS_KEY_FILE", "/tls/s.key")
	t.Setenv("TLS_CLIENT_CA_FILE", "/tls/ca.crt")
	t.Setenv("TLS_PARTNER_CLIENTS", "spiffe://p.example/acme,cn:initech")
	t.Setenv("ALLOW_PLAINTEXT", "database,amqp")
	c, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	if c.TLS.CertFile != "/tls/s.crt" || c.TLS.ClientAuth != "require" || len(c.TLS.PartnerClients) != 2 || len(c.TLS.AllowPlaintext) != 2 {
		t.Fatalf("%+v", c.TLS)
	}
}

// Tracing settings that cannot work are refused at start: an exporter or an OTLP
// protocol that is not built in.
func TestLoad_TelemetrySettings(t *testing.T) {
	for _, tc := range []struct{ env, value, want string }{
		{"OTEL_TRACES_EXPORTER", "zipkin", "OTEL_TRACES_EXPORTER"},
		{"OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", "OTEL_EXPORTER_OTLP_PROTOCOL"},
		{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc", "OTEL_EXPORTER_OTLP_PROTOCOL"},
	} {
		t.Run(tc.env, func(t *testing.T) {
			t.Setenv(tc.env, tc.value)
			if _, err := config.Load(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%s=%s: %v, want an error naming %s", tc.env, tc.value, err, tc.want)
			}
		})
	}
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")
	if _, err := config.Load(); err != nil {
		t.Fatalf("the traces protocol wins: %v", err)
	}
}

// The rate settings of operations, checkouts and anonymous clients are read and checked.
func TestLoad_RateSettings(t *testing.T) {
	t.Setenv("CHECKOUT_RATE", "0.5")
	t.Setenv("CLIENT_IPV6_PREFIX", "56")
	c, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	if o := c.Overload; o.CheckoutRate != 0.5 || o.CheckoutBurst != 5 || o.ClientIPv6Prefix != 56 || o.ClientBuckets != 100000 ||
		o.AnonymousBuckets != 50000 || c.GraphQL.APQMaxEntriesPerClient != 100 {
		t.Fatalf("%+v %+v", o, c.GraphQL)
	}
	for name, bad := range map[string]string{"CHECKOUT_RATE": "-1", "CHECKOUT_BURST": "-1", "CLIENT_IPV6_PREFIX": "8",
		"CLIENT_ANONYMOUS_BUCKETS": "0", "CLIENT_BUCKETS": "0", "APQ_MAX_ENTRIES_PER_CLIENT": "0"} {
		t.Run(name, func(t *testing.T) {
			t.Setenv(name, bad)
			if _, err := config.Load(); err == nil || !strings.Contains(err.Error(), name) {
				t.Errorf("%s=%s: %v", name, bad, err)
			}
		})
	}
}

// TestL5_Production_RefusesTheRestOfThePlainTextAndDefaults: production refuses, one line
// each, a plain-text DATABASE_READ_URL, no WEBHOOK_SECRET_KEY (partner secrets stored in
// clear), an http:// Loki or Elasticsearch (its API key sent in clear), RabbitMQ's guest
// user on any node of AMQP_URL, and /metrics on the public listener; ALLOW_PLAINTEXT
// names the plain-text ones it accepts.
func TestL5_Production_RefusesTheRestOfThePlainTextAndDefaults(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		change func(*config.Config)
		want   string // in the refusal
		allow  string // the ALLOW_PLAINTEXT word that accepts it, if any
	}{
		{"plain-text read replica", func(c *config.Config) { c.Database.ReadURL = "postgres://u@replica/checkout?sslmode=disable" }, "DATABASE_READ_URL", "database"},
		{"read replica without sslmode", func(c *config.Config) { c.Database.ReadURL = "postgres://u@replica/checkout" }, "DATABASE_READ_URL", "database"},
		{"webhook secrets in clear", func(c *config.Config) { c.Webhooks.SecretKey = "" }, "WEBHOOK_SECRET_KEY", ""},
		{"http:// Loki", func(c *config.Config) { c.Logs.LokiURL = "http://loki:3100" }, "LOKI_URL", "loki"},
		{"http:// Elasticsearch", func(c *config.Config) {
			c.Analytics.Sink, c.Analytics.ElasticsearchURLs, c.Analytics.ElasticsearchAPIKey = "elasticsearch", []string{"https://es1:9200", "http://es2:9200"}, "key"
		}, "ELASTICSEARCH_URLS", "elasticsearch"},
		{"guest on the second node", func(c *config.Config) { c.Broker.URL = "amqps://checkout:pw@mq1:5671/,amqps://guest:guest@mq2:5671/" }, "guest", ""},
		{"/metrics on the public listener", func(c *config.Config) { c.HTTP.MetricsAddr = "" }, "METRICS_ADDR", ""},
		{"/metrics on the public listener's address", func(c *config.Config) { c.HTTP.MetricsAddr = c.HTTP.Addr }, "METRICS_ADDR", ""},
	} {
		c := safeProduction("production")
		tc.change(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v, want one line naming %s", tc.name, err, tc.want)
			continue
		}
		if tc.allow != "" {
			if !strings.Contains(err.Error(), "ALLOW_PLAINTEXT="+tc.allow) {
				t.Errorf("%s: %v, want the word ALLOW_PLAINTEXT=%s", tc.name, err, tc.allow)
			}
			c.TLS.AllowPlaintext = []string{tc.allow}
			if err := c.Validate(); err != nil {
				t.Errorf("%s with ALLOW_PLAINTEXT=%s: %v", tc.name, tc.allow, err)
			}
		}
		c = safeProduction("development")
		tc.change(&c)
		if err := c.Validate(); err != nil {
			t.Errorf("%s in development: %v", tc.name, err)
		}
	}
	// Verified and encrypted, they pass.
	c := safeProduction("production")
	c.Database.ReadURL = "postgres://u@replica/checkout?sslmode=verify-full&sslrootcert=/etc/db-ca.pem"
	c.Logs.LokiURL = "https://loki:3100"
	c.Analytics.Sink, c.Analytics.ElasticsearchURLs = "elasticsearch", []string{"https://es1:9200", "https://es2:9200"}
	if err := c.Validate(); err != nil {
		t.Fatalf("TLS everywhere: %v", err)
	}
}

// TestL4_Production_RequiresIssuerAndAudience: production refuses to accept tokens
// without JWT_ISSUER and JWT_AUDIENCE; JWT_MAX_LIFETIME is a positive bound, 24h by
// default.
func TestL4_Production_RequiresIssuerAndAudience(t *testing.T) {
	t.Parallel()
	for name, change := range map[string]func(*config.Config){
		"no JWT_ISSUER":   func(c *config.Config) { c.Auth.Issuer = "" },
		"no JWT_AUDIENCE": func(c *config.Config) { c.Auth.Audience = "" },
	} {
		c := safeProduction("production")
		change(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "JWT_ISSUER and JWT_AUDIENCE") || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v", name, err)
		}
		c.Env = "development"
		if err := c.Validate(); err != nil {
			t.Errorf("%s in development: %v", name, err)
		}
	}
	if d := config.Defaults().Auth.MaxLifetime; d != 24*time.Hour {
		t.Errorf("JWT_MAX_LIFETIME defaults to %v", d)
	}
	c := config.Defaults()
	c.Auth.MaxLifetime = 0
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "JWT_MAX_LIFETIME") {
		t.Errorf("JWT_MAX_LIFETIME=0: %v", err)
	}
}
