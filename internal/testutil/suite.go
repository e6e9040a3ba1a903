package testutil

import (
	"os"
	"testing"
)

// Required skips a test whose suite cannot run here (a tool that does not build, say),
// except under CI (the CI variable set), where it fails instead: CI is never green
// without a required suite.
func Required(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("required suite cannot run under CI: "+format, args...)
	}
	t.Skipf("skipping (outside CI only): "+format, args...)
}

// Slow marks a slow test (a fault held for seconds, a real Prometheus, a built binary):
// `go test -short` (make test-fast) skips it, make test and CI run it.
func Slow(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("slow test: skipped with -short (make test-fast); make test runs it")
	}
}
