package config

import (
	"strings"
	"testing"
	"time"
)

func TestValidate_QuorumSizeBelowOne_ClearError(t *testing.T) {
	t.Parallel()
	c := Config{JWTSecret: strings.Repeat("s", 32), KeyRetention: 24 * time.Hour, ReservationTTL: time.Minute,
		PaymentProvider: "sandbox", AMQPQuorumSize: 3}
	if err := c.Validate(); err != nil {
		t.Fatalf("a valid configuration: %v", err)
	}
	c.AMQPQuorumSize = 0
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "AMQP_QUORUM_SIZE") {
		t.Fatalf("AMQP_QUORUM_SIZE=0: %v, want an error naming it", err)
	}
}
