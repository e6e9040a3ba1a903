// Package metricstest reads the metrics as Prometheus would, for the tests of every
// package that exports some.
package metricstest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/checkout-backend/checkout/internal/platform/metrics"
)

// Scrape reads m's /metrics as Prometheus would.
func Scrape(t testing.TB, m *metrics.Metrics) string {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d\n%s", resp.StatusCode, b)
	}
	return string(b)
}

// WantLines reports each of lines that body (a scrape) lacks, as a whole line.
func WantLines(t testing.TB, body string, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if !strings.Contains(body, "\n"+l+"\n") {
			t.Errorf("/metrics lacks line %q", l)
		}
	}
}
