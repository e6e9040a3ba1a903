package testutil

import (
	"testing"
	"time"
)

// Eventually waits until cond holds, checking every 10 ms, and fails the test with what
// when timeout passes first. It is the one way tests wait on something that happens
// elsewhere (a relay, a worker, a server): never a sleep of a guessed length.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Within(timeout, cond) {
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
}

// Within reports whether cond held within timeout, checking every 10 ms.
func Within(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}
