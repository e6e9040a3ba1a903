package testutil

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/checkout-backend/checkout/internal/broker"
	"github.com/checkout-backend/checkout/workers"
)

// BuildCheckout builds the checkout binary (./cmd/checkout) into a directory of the test
// and returns its path; the build cache makes every build after the first quick.
func BuildCheckout(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "checkout")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/checkout-backend/checkout/cmd/checkout").CombinedOutput(); err != nil {
		t.Fatalf("build the checkout binary: %v\n%s", err, out)
	}
	return bin
}

// DeploymentPrefix is a fresh AMQP_PREFIX for a service the test runs: the exchange and
// queues that deployment declares on the shared broker are deleted when the test ends.
func DeploymentPrefix(t testing.TB) string {
	t.Helper()
	prefix := "t" + RandomID(4) + "."
	t.Cleanup(func() {
		b := broker.New(AMQPURL(), broker.Topology{Prefix: prefix, Consumers: workers.DeploymentConsumers(true)}, nil)
		b.Delete(context.Background())
		b.Close()
	})
	return prefix
}
