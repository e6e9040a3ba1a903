package testutil

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
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
		// The go command writes a cached executable in place. Two test processes that
		// build it at once (deploy, systest and cmd/checkout run in parallel) would leave
		// one running the file while the other still holds it open for writing, and the
		// exec fails with "text file busy". A lock across processes makes the second
		// go command find the first one's entry in the cache instead of writing it again.
		unlock, err := lockFile(filepath.Join(os.TempDir(), "checkout-go-tool.lock"))
		if err != nil {
			checkoutErr = err
			return
		}
		defer unlock()
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

// lockFile takes an exclusive lock on path (created if missing), held until the returned
// function is called or the process exits.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}
