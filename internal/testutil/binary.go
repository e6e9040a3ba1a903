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

// BuildCheckout returns the path of the checkout binary (./cmd/checkout, a tool of the
// module in go.mod): `go tool -n` links it once and keeps the executable in the build
// cache, so the tests that run the binary share one build, across packages and runs,
// until the code changes. Tests run it; they never write to it.
func BuildCheckout(t testing.TB) string {
	t.Helper()
	return toolPath(t, "github.com/checkout-backend/checkout/cmd/checkout", "the checkout binary")
}

// ToxiproxyBin returns the path of the toxiproxy server (a tool in go.mod), built as
// BuildCheckout builds the service.
func ToxiproxyBin(t testing.TB) string {
	t.Helper()
	return toolPath(t, "github.com/Shopify/toxiproxy/v2/cmd/server", "toxiproxy (go tool)")
}

// toolPath is goTool's path of the tool pkg, or the test's end.
func toolPath(t testing.TB, pkg, what string) string {
	t.Helper()
	path, err := goTool(pkg)
	if err != nil {
		t.Fatalf("build %s: %v", what, err)
	}
	return path
}

// tools holds, per tool package, its one `go tool -n` of this process.
var tools sync.Map

type toolBuild struct {
	once sync.Once
	path string
	err  error
}

// goTool builds a tool of go.mod once per process and returns its executable in the
// build cache. The go command writes a cached executable in place: two test processes
// building it at once (the packages run in parallel) would leave one running the file
// while the other still holds it open for writing, and that exec fails with "text file
// busy". A lock across processes makes the second go command find the first one's
// entry in the cache instead of writing it again.
func goTool(pkg string) (string, error) {
	v, _ := tools.LoadOrStore(pkg, &toolBuild{})
	b := v.(*toolBuild)
	b.once.Do(func() {
		unlock, err := lockFile(filepath.Join(os.TempDir(), "checkout-go-tool.lock"))
		if err != nil {
			b.err = err
			return
		}
		defer unlock()
		var stderr bytes.Buffer
		cmd := exec.Command("go", "tool", "-n", pkg)
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			b.err = fmt.Errorf("%v\n%s", err, stderr.String())
		}
		b.path = strings.TrimSpace(string(out))
	})
	return b.path, b.err
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
