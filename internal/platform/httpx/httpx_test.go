package httpx_test

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
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

func TestLog_RecoversAPanicWithTheGivenAnswer(t *testing.T) {
	t.Parallel()
	boom := http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") })
	for name, c := range map[string]struct {
		answer http.HandlerFunc
		body   string
	}{
		"Default": {nil, "internal server error\n"},
		"Given": {func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusInternalServerError)
			w.Write([]byte("given " + r.URL.Path))
		}, "given /graphql"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var logged bytes.Buffer
			w := httptest.NewRecorder()
			httpx.Log(slog.New(slog.NewJSONHandler(&logged, nil)), c.answer, boom).ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/graphql", nil))
			if w.Code != http.StatusInternalServerError || w.Body.String() != c.body {
				t.Errorf("answer %d %q, want 500 %q", w.Code, w.Body.String(), c.body)
			}
			if !strings.Contains(logged.String(), `"panic":"boom"`) || !strings.Contains(logged.String(), `"status":500`) {
				t.Errorf("log lacks the panic or the status:\n%s", logged.String())
			}
		})
	}
}
