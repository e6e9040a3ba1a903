package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/checkout-backend/checkout/internal/platform/config"
)

func TestValidate_QuorumSizeBelowOne_ClearError(t *testing.T) {
	t.Parallel()
	c := config.Config{JWTSecret: strings.Repeat("s", 32), KeyRetention: 24 * time.Hour, ReservationTTL: time.Minute,
		PaymentProvider: "sandbox", AMQPQuorumSize: 3,
		ReservationStrategy: "batch", BatchMaxSize: 64, BatchMaxWait: time.Millisecond, BatchWorkers: 4, CheckoutQueue: 4096, CheckoutTimeout: 10 * time.Second}
	if err := c.Validate(); err != nil {
		t.Fatalf("a valid configuration: %v", err)
	}
	c.AMQPQuorumSize = 0
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "AMQP_QUORUM_SIZE") {
		t.Fatalf("AMQP_QUORUM_SIZE=0: %v, want an error naming it", err)
	}
}
