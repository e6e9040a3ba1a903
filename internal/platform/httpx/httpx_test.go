package httpx_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/checkout-backend/checkout/internal/platform/httpx"
)

func TestMetrics_OnItsOwnListenerWhenAddrIsSet(t *testing.T) {
	t.Parallel()
	metrics := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("# metrics\n")) })
	get := func(h http.Handler) int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		return rec.Code
	}

	api := http.NewServeMux()
	if srv := httpx.Metrics(api, "", metrics); srv != nil || get(api) != http.StatusOK {
		t.Fatalf("without METRICS_ADDR /metrics is on the API listener (the contract): %v %d", srv, get(api))
	}

	api = http.NewServeMux()
	srv := httpx.Metrics(api, "127.0.0.1:9464", metrics)
	if srv == nil || srv.Addr != "127.0.0.1:9464" || get(srv.Handler) != http.StatusOK {
		t.Fatalf("the metrics server: %+v", srv)
	}
	if code := get(api); code != http.StatusNotFound {
		t.Fatalf("with METRICS_ADDR the API listener still answers /metrics: %d", code)
	}
	if srv.WriteTimeout <= 0 || srv.ReadHeaderTimeout <= 0 {
		t.Fatalf("the metrics server has no timeouts: %+v", srv)
	}
}

func TestNewServer_HasAWriteTimeout(t *testing.T) {
	t.Parallel()
	if s := httpx.NewServer(":0", http.NotFoundHandler(), 0); s.WriteTimeout != httpx.DefaultWriteTimeout || s.ReadTimeout <= 0 || s.IdleTimeout <= 0 {
		t.Fatalf("%+v", s)
	}
}
