package telemetry

import (
	"net/http"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/propagation"
)

// Handler wraps h so each request is a server span. Probes (/healthz, /readyz, /metrics)
// are not traced. Put it outermost, so the request log line and everything below run
// inside the span.
//
// The edge trusts little of a caller's trace headers, because everything in the request's
// context is stamped on every event it causes: a client's baggage is never read (any
// caller could fill each outbox row with kilobytes of its choosing); a traceparent is
// read only when it is the 55 characters of W3C version 00; and a caller that did not
// authenticate its connection with a verified client certificate (the storefront, any
// browser) starts a new trace linked to its span rather than continuing it, its
// tracestate dropped. A peer of the service's own PKI continues its trace.
func Handler(h http.Handler) http.Handler {
	traced := otelhttp.NewHandler(h, "http.server",
		otelhttp.WithPropagators(propagation.TraceContext{}),
		otelhttp.WithPublicEndpointFn(public),
		otelhttp.WithFilter(func(r *http.Request) bool {
			switch r.URL.Path {
			case "/healthz", "/readyz", "/metrics":
				return false
			}
			return true
		}),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method + " " + r.URL.Path }),
	)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tp, ts := r.Header.Values(traceparent), r.Header.Values(tracestate)
		if len(tp) > 1 || len(tp) == 1 && len(tp[0]) != traceparentLen || len(ts) > 0 && public(r) {
			// Not the caller's to set: a copy of the headers without them (a request's
			// headers belong to the caller of ServeHTTP).
			r = r.Clone(r.Context())
			if len(tp) != 1 || len(tp[0]) != traceparentLen {
				r.Header.Del(traceparent)
			}
			if public(r) {
				r.Header.Del(tracestate)
			}
		}
		traced.ServeHTTP(w, r)
	})
}

const (
	traceparent = "traceparent"
	tracestate  = "tracestate"
	// traceparentLen is a W3C version 00 traceparent: 00-<32 hex>-<16 hex>-<2 hex>.
	traceparentLen = 55
)

// public reports whether r comes from a caller outside the service's PKI: one whose
// connection presented no verified client certificate.
func public(r *http.Request) bool { return r.TLS == nil || len(r.TLS.VerifiedChains) == 0 }
