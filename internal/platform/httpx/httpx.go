// Package httpx holds the HTTP plumbing shared by every endpoint: correlation ids,
// request logging, panic recovery, and the health and readiness probes.
package httpx

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"regexp"
	"sync"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sync/singleflight"

	clog "github.com/checkout-backend/checkout/internal/platform/log"
)

var requestIDRe = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// RequestID takes X-Request-ID (or makes one), puts it in the context and echoes it.
func RequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-ID")
		if !requestIDRe.MatchString(id) {
			id = uuid.NewString()
		}
		w.Header().Set("X-Request-ID", id)
		next.ServeHTTP(w, r.WithContext(clog.WithCorrelationID(r.Context(), id)))
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer (websocket hijack).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type opKey struct{}

// OperationRecorder lets an inner handler name the request's operation for the log.
type OperationRecorder struct{ Name string }

// SetOperation records the GraphQL operation name of the request in ctx.
func SetOperation(ctx context.Context, name string) {
	if rec, ok := ctx.Value(opKey{}).(*OperationRecorder); ok {
		rec.Name = name
	}
}

// Log writes one JSON line per request, and recovers a panic: it is logged and, when
// nothing was written yet, answered by internalError (nil: a plain-text 500; the API
// answers a GraphQL error, gqlhttp.InternalError).
func Log(logger *slog.Logger, internalError http.HandlerFunc, next http.Handler) http.Handler {
	if internalError == nil {
		internalError = func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "internal server error", http.StatusInternalServerError)
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		rec := &OperationRecorder{}
		ctx := context.WithValue(r.Context(), opKey{}, rec)
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				logger.ErrorContext(ctx, "panic serving request", "panic", p, "path", r.URL.Path)
				if sw.status == 0 {
					internalError(sw, r)
				}
			}
			if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" || r.URL.Path == "/metrics" {
				return
			}
			attrs := []any{"method", r.Method, "path", r.URL.Path, "status", sw.status,
				"latencyMs", time.Since(start).Milliseconds()}
			if rec.Name != "" {
				attrs = append(attrs, "operation", rec.Name)
			}
			logger.InfoContext(ctx, "request", attrs...)
		}()
		next.ServeHTTP(sw, r.WithContext(ctx))
	})
}

// Check is a named readiness check.
type Check struct {
	Name string
	Fn   func(ctx context.Context) error
}

// Health answers /healthz (alive) and /readyz (every check passes; see Readiness).
func Health(mux *http.ServeMux, checks ...Check) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"status":"ok"}`))
	})
	mux.Handle("GET /readyz", NewReadiness(checks...))
}

// ReadyTTL is how long a /readyz answer is reused.
const ReadyTTL = time.Second

// Readiness is GET /readyz: 200 when every check passes, else 503, with each check's
// state. /readyz is public (load balancers call it) and outside the load shedder, so
// it is cheap whatever its callers do: the checks run at most once per TTL, requests
// that come meanwhile share the last answer, those that come while the checks run
// wait for that run (one run at a time), and a run has ReadyTimeout. Hammering
// /readyz thus costs at most one ping of each dependency a second.
type Readiness struct {
	// TTL is how long an answer is reused (default ReadyTTL).
	TTL time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time

	checks []Check
	runs   singleflight.Group
	mu     sync.Mutex
	at     time.Time
	last   readyAnswer
}

type readyAnswer struct {
	code int
	body []byte
}

// ReadyTimeout bounds one run of the readiness checks.
const ReadyTimeout = 2 * time.Second

// NewReadiness returns the /readyz handler of checks.
func NewReadiness(checks ...Check) *Readiness {
	return &Readiness{TTL: ReadyTTL, Now: time.Now, checks: checks}
}

func (rd *Readiness) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a := rd.answer(r.Context())
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(a.code)
	w.Write(a.body)
}

// fresh returns the last answer while it is younger than TTL.
func (rd *Readiness) fresh() (readyAnswer, bool) {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	return rd.last, !rd.at.IsZero() && rd.Now().Sub(rd.at) < rd.TTL
}

func (rd *Readiness) answer(ctx context.Context) readyAnswer {
	if a, ok := rd.fresh(); ok {
		return a
	}
	v, _, _ := rd.runs.Do("", func() (any, error) {
		if a, ok := rd.fresh(); ok {
			return a, nil // a run ended between the look above and this one
		}
		// Not the caller's context: its run answers every caller waiting on it.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ReadyTimeout)
		defer cancel()
		res := map[string]string{}
		code := http.StatusOK
		for _, c := range rd.checks {
			if err := c.Fn(ctx); err != nil {
				res[c.Name] = "unavailable"
				code = http.StatusServiceUnavailable
			} else {
				res[c.Name] = "ok"
			}
		}
		body, _ := json.Marshal(res)
		a := readyAnswer{code: code, body: append(body, '\n')}
		rd.mu.Lock()
		rd.at, rd.last = rd.Now(), a
		rd.mu.Unlock()
		return a, nil
	})
	return v.(readyAnswer)
}

// DefaultWriteTimeout bounds the writing of one response when ServerTimeouts leaves it 0.
const DefaultWriteTimeout = 30 * time.Second

// NewServer is the API's http.Server: its timeouts bound how long a client may take to
// send a request and to read the response (WriteTimeout); the load shedder bounds the
// body's part tighter (HTTP_BODY_TIMEOUT). WebSocket connections are
// hijacked, which clears the server's deadlines: they have their own
// (graph/gqlhttp.SocketOptions).
func NewServer(addr string, h http.Handler, writeTimeout time.Duration) *http.Server {
	if writeTimeout <= 0 {
		writeTimeout = DefaultWriteTimeout
	}
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       120 * time.Second,
		// Each stream of an HTTP/2 connection is a request being received at once;
		// Go's default is 250. The load shedder also bounds the bodies one client
		// sends at once (BODIES_PER_CLIENT).
		HTTP2: &http.HTTP2Config{MaxConcurrentStreams: MaxConcurrentStreams},
	}
}

// MaxConcurrentStreams bounds the streams of one HTTP/2 connection.
const MaxConcurrentStreams = 100

// Metrics serves GET /metrics: on mux (the API's listener) when addr is empty, as the
// contract has it; otherwise on a server of its own at addr (METRICS_ADDR), returned for
// the caller to run, and not on mux, so the API's listener does not expose it.
func Metrics(mux *http.ServeMux, addr string, metrics http.Handler) *http.Server {
	if addr == "" {
		mux.Handle("GET /metrics", metrics)
		return nil
	}
	own := http.NewServeMux()
	own.Handle("GET /metrics", metrics)
	return NewServer(addr, own, 0)
}
