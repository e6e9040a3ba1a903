package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/checkout-backend/checkout/internal/platform/config"
)

func TestValidate_QuorumSizeBelowOne_ClearError(t *testing.T) {
	t.Parallel()
	c := config.Defaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("a valid configuration: %v", err)
	}
	c.Broker.QuorumSize = 0
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "AMQP_QUORUM_SIZE") {
		t.Fatalf("AMQP_QUORUM_SIZE=0: %v, want an error naming it", err)
	}
}

// TestValidate_PoolMode_ClearErrors: DATABASE_POOL_MODE is session or transaction, and
// DATABASE_SESSION_URL means something only beside a transaction pooler.
func TestValidate_PoolMode_ClearErrors(t *testing.T) {
	t.Parallel()
	c := config.Defaults()
	c.Database.PoolMode = "statement"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "DATABASE_POOL_MODE") {
		t.Fatalf("DATABASE_POOL_MODE=statement: %v, want an error naming it", err)
	}
	c.Database.PoolMode, c.Database.SessionURL = "session", "postgres://db/checkout"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "DATABASE_SESSION_URL") {
		t.Fatalf("DATABASE_SESSION_URL without a pooler: %v, want an error naming it", err)
	}
	c.Database.PoolMode = "transaction"
	if err := c.Validate(); err != nil || !c.Database.Pooled() {
		t.Fatalf("a transaction pooler with a session URL: %v (pooled %v)", err, c.Database.Pooled())
	}
}

// OUTBOX_LINGER is a short wait before each claim: 0 turns it off; a negative one or one
// past a second is refused by name.
func TestValidate_OutboxLinger_ZeroToOneSecond(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"0", "5ms", "1s"} {
		c := config.Defaults()
		var err error
		if c.Relay.Linger, err = time.ParseDuration(v); err != nil {
			t.Fatal(err)
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("OUTBOX_LINGER=%s: %v", v, err)
		}
	}
	for _, d := range []time.Duration{-time.Millisecond, 2 * time.Second} {
		c := config.Defaults()
		c.Relay.Linger = d
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "OUTBOX_LINGER") {
			t.Fatalf("OUTBOX_LINGER=%s: %v, want an error naming it", d, err)
		}
	}
}
