package testutil

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/checkout-backend/checkout/internal/broker"
	"github.com/checkout-backend/checkout/workers"
)

var (
	checkoutOnce sync.Once
	checkoutBin  string
	checkoutErr  error
)

// BuildCheckout returns the path of the checkout binary (./cmd/checkout, a tool of the
// module in go.mod): `go tool -n` links it once and keeps the executable in the build
// cache, so the tests that run the binary share one build, across packages and runs,
// until the code changes. Tests run it; they never write to it.
func BuildCheckout(t testing.TB) string {
	t.Helper()
	checkoutOnce.Do(func() {
		var stderr bytes.Buffer
		cmd := exec.Command("go", "tool", "-n", "github.com/checkout-backend/checkout/cmd/checkout")
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			checkoutErr = fmt.Errorf("%v\n%s", err, stderr.String())
		}
		checkoutBin = strings.TrimSpace(string(out))
	})
	if checkoutErr != nil {
		t.Fatalf("build the checkout binary: %v", checkoutErr)
	}
	return checkoutBin
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
