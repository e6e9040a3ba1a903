package httpx_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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

// TestL6_ReadyzIsCachedAndBounded: /readyz is public and outside the load shedder, so
// its checks (a ping of the database and the broker) run at most once per ReadyTTL
// however often it is called (finding L6): 200 calls within the TTL cost one run, and
// each answer is the run's.
func TestL6_ReadyzIsCachedAndBounded(t *testing.T) {
	t.Parallel()
	var runs atomic.Int64
	failing := atomic.Bool{}
	check := httpx.Check{Name: "database", Fn: func(context.Context) error {
		runs.Add(1)
		if failing.Load() {
			return errors.New("down")
		}
		return nil
	}}
	now := time.Unix(1000, 0)
	var mu sync.Mutex
	rd := httpx.NewReadiness(check)
	rd.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	mux := http.NewServeMux()
	mux.Handle("GET /readyz", rd)
	call := func() *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return w
	}
	var wg sync.WaitGroup
	codes := make([]int, 200)
	for i := range codes {
		wg.Go(func() { codes[i] = call().Code })
	}
	wg.Wait()
	if n := runs.Load(); n != 1 {
		t.Fatalf("200 calls within the TTL ran the checks %d times", n)
	}
	for i, c := range codes {
		if c != http.StatusOK {
			t.Fatalf("call %d: %d", i, c)
		}
	}
	// After the TTL the checks run again, and their answer is the new one.
	failing.Store(true)
	mu.Lock()
	now = now.Add(httpx.ReadyTTL)
	mu.Unlock()
	if w := call(); w.Code != http.StatusServiceUnavailable || w.Body.String() != `{"database":"unavailable"}`+"\n" || runs.Load() != 2 {
		t.Fatalf("after the TTL: %d %q, %d runs", w.Code, w.Body.String(), runs.Load())
	}
}
