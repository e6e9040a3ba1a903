package gqlhttp_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/checkout-backend/checkout/graph/gqlhttp"
	"github.com/checkout-backend/checkout/internal/platform/httpx"
	"github.com/checkout-backend/checkout/internal/platform/overload"
)

// The answers the platform's middleware writes through gqlhttp are the API's GraphQL
// errors, byte for byte what clients have always been sent.
func TestAnswersOfThePlatformsMiddleware(t *testing.T) {
	t.Parallel()
	t.Run("Shed_503And429", func(t *testing.T) {
		t.Parallel()
		shed := overload.New(overload.Options{Rate: 0.001, Burst: 1, Limits: map[overload.Class]int{overload.Read: 1},
			MaxWait: -1, RetryAfter: 2 * time.Second, Reject: gqlhttp.Refuse, Classify: gqlhttp.Classify(nil)})
		hold, release := make(chan struct{}), make(chan struct{})
		h := shed.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.RemoteAddr == "10.0.0.1:1" {
				close(hold)
				<-release
			}
		}))
		from := func(addr string) *httptest.ResponseRecorder {
			r := httptest.NewRequest(http.MethodPost, "/graphql", strings.NewReader(`{"query":"{ products { edges { cursor } } }"}`))
			r.Header.Set("Content-Type", "application/json")
			r.RemoteAddr = addr
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			return w
		}
		done := make(chan struct{})
		go func() { from("10.0.0.1:1"); close(done) }()
		<-hold
		busy := from("10.0.0.2:1")
		close(release)
		<-done
		limited := from("10.0.0.1:1")
		for _, c := range []struct {
			w                *httptest.ResponseRecorder
			status           int
			retryAfter, body string
		}{
			{busy, 503, "2", `{"errors":[{"extensions":{"code":"SERVICE_UNAVAILABLE"},"message":"the service is busy; retry later"}]}` + "\n"},
			{limited, 429, "1000", `{"errors":[{"extensions":{"code":"RATE_LIMITED"},"message":"too many requests from this client; retry later"}]}` + "\n"},
		} {
			if c.w.Code != c.status || c.w.Header().Get("Retry-After") != c.retryAfter || c.w.Header().Get("Content-Type") != "application/json" || c.w.Body.String() != c.body {
				t.Errorf("answer %d, Retry-After %q, Content-Type %q, body %q; want %d, %q, application/json, %q",
					c.w.Code, c.w.Header().Get("Retry-After"), c.w.Header().Get("Content-Type"), c.w.Body.String(), c.status, c.retryAfter, c.body)
			}
		}
	})
	t.Run("Panic_500", func(t *testing.T) {
		t.Parallel()
		h := httpx.Log(slog.New(slog.NewTextHandler(io.Discard, nil)), gqlhttp.InternalError,
			http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") }))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/graphql", nil))
		want := `{"errors":[{"message":"internal server error","extensions":{"code":"INTERNAL_SERVER_ERROR"}}]}` + "\n"
		if w.Code != http.StatusInternalServerError || w.Body.String() != want || w.Header().Get("Content-Type") != "text/plain; charset=utf-8" {
			t.Errorf("answer %d %q (%s), want 500 %q", w.Code, w.Body.String(), w.Header().Get("Content-Type"), want)
		}
	})
}
