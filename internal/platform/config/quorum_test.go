package config_test

import (
	"strings"
	"testing"

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
