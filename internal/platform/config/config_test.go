package config_test

import (
	"strings"
	"testing"

	"github.com/checkout-backend/checkout/internal/platform/config"
)

// safeProduction is a production configuration that passes.
func safeProduction(env string) config.Config {
	return config.Config{
		Env: env, JWTSecret: strings.Repeat("s", 40), KeyRetention: 48 * 3600e9, ReservationTTL: 600e9,
		PaymentProvider: "stripe", StripeSecretKey: "sk_live_x", StripeAPIBase: "https://api.stripe.com", StripeWebhookSecret: "whsec_x",
		DatabaseURL: "postgres://checkout@db:5432/checkout?sslmode=verify-full", AMQPURL: "amqps://checkout:pw@mq:5671/",
		ReservationStrategy: "batch", BatchMaxSize: 64, BatchMaxWait: 1e6, BatchWorkers: 4, CheckoutQueue: 4096, CheckoutTimeout: 10e9,
	}
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
		{"private webhooks", func(c *config.Config) { c.WebhookAllowPrivate = true }, "WEBHOOK_ALLOW_PRIVATE"},
		{"introspection", func(c *config.Config) { c.GraphQLIntrospection = &yes }, "GRAPHQL_INTROSPECTION"},
		{"plain Stripe", func(c *config.Config) { c.StripeAPIBase = "http://stripe-mock:12111" }, "STRIPE_API_BASE"},
		{"unencrypted database", func(c *config.Config) { c.DatabaseURL = "postgres://u@db/checkout?sslmode=disable" }, "sslmode=disable"},
		{"unencrypted database DSN", func(c *config.Config) { c.DatabaseURL = "host=db user=u sslmode=disable" }, "sslmode=disable"},
		{"guest AMQP", func(c *config.Config) { c.AMQPURL = "amqp://guest:guest@mq:5672/" }, "guest"},
		{"Stripe without its webhook secret", func(c *config.Config) { c.StripeWebhookSecret = "" }, "STRIPE_WEBHOOK_SECRET"},
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
	c.WebhookAllowPrivate, c.GraphQLIntrospection, c.AMQPURL = true, &yes, "amqp://guest:guest@mq/"
	if err := c.Validate(); err == nil || len(strings.Split(err.Error(), "\n")) != 3 {
		t.Fatalf("three problems: %v", err)
	}
	// The database override is the one that makes sense.
	c = safeProduction("production")
	c.DatabaseURL, c.AllowInsecureDatabase = "postgres://u@localhost/checkout?sslmode=disable", true
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
	if c.MetricsAddr != "127.0.0.1:9464" || len(c.TrustedProxies) != 2 || c.SocketsPerClient != 3 ||
		c.SocketInitTimeout != 5e9 || c.GraphQLMaxTokens != 10000 || c.APQMaxEntries != 2000 || c.HTTPWriteTimeout != 30e9 {
		t.Fatalf("%+v", c.Edge)
	}
}
