package graph_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel"

	"github.com/checkout-backend/checkout/internal/platform/telemetry"
	"github.com/checkout-backend/checkout/internal/platform/telemetry/telemetrytest"
	"github.com/checkout-backend/checkout/internal/testutil"
)

// TestL9_ClientTraceHeaders_NotCopiedIntoEvents: a client's baggage (7.7 KB) and long
// tracestate reach no event: the outbox row of its checkout carries only the service's
// own trace context, with tracing off (the propagator alone, as serve runs by default)
// and on (a new trace, linked to the client's span). A malformed traceparent is ignored.
// Not parallel: it sets the process's propagator and tracer provider.
func TestL9_ClientTraceHeaders_NotCopiedIntoEvents(t *testing.T) {
	prev := otel.GetTextMapPropagator()
	otel.SetTextMapPropagator(telemetry.Propagator)
	t.Cleanup(func() { otel.SetTextMapPropagator(prev) })
	const clientTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	baggage := "k0=" + strings.Repeat("b", 3000)
	for i := 1; len(baggage) < 7700; i++ {
		baggage += ",k" + string(rune('a'+i%26)) + string(rune('a'+i/26%26)) + "=" + strings.Repeat("v", 200)
	}
	var tracestate []string
	for i := 0; i < 30; i++ {
		tracestate = append(tracestate, "v"+string(rune('a'+i%26))+string(rune('a'+i/26))+"="+strings.Repeat("s", 200))
	}
	// run is a stretch of one letter that only the client's values hold: a trace or
	// correlation id is hex and may well hold "bbb" by chance (it did once in CI).
	run := func(letter string) string { return strings.Repeat(letter, 16) }
	for _, tc := range []struct {
		name, traceparent string
		record            bool
	}{
		{"tracing off", "00-" + clientTrace + "-00f067aa0ba902b7-01", false},
		{"tracing on", "00-" + clientTrace + "-00f067aa0ba902b7-01", true},
		{"tracing off, a long traceparent", "01-" + clientTrace + "-00f067aa0ba902b7-01-" + strings.Repeat("x", 3000), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.record {
				telemetrytest.Record(t)
			}
			db := testutil.NewDB(t)
			api := testutil.NewAPI(t, db)
			api.Product(t, "TRACE", 500, map[string]int{"w": 5})
			body, _ := json.Marshal(map[string]any{"query": checkoutMutation, "variables": map[string]any{"input": map[string]any{
				"idempotencyKey": "trace-1", "paymentToken": "tok_visa", "items": items("TRACE", 1)}}})
			req := httptest.NewRequest(http.MethodPost, "/graphql", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+testutil.Token(t, "trace-customer"))
			req.Header.Set("traceparent", tc.traceparent)
			req.Header.Set("tracestate", strings.Join(tracestate, ","))
			req.Header.Set("baggage", baggage)
			rec := httptest.NewRecorder()
			api.Handler.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"status"`) {
				t.Fatalf("checkout: %d %s", rec.Code, rec.Body.String())
			}
			var headers []string
			if err := db.NewRaw(`SELECT headers::text FROM outbox`).Scan(context.Background(), &headers); err != nil || len(headers) == 0 {
				t.Fatalf("outbox rows: %v %v", headers, err)
			}
			for _, h := range headers {
				t.Logf("outbox row headers: %d bytes", len(h))
				var m map[string]string
				if err := json.Unmarshal([]byte(h), &m); err != nil {
					t.Fatalf("headers %s: %v", h, err)
				}
				if _, ok := m["baggage"]; ok || len(h) > 300 || strings.Contains(h, run("s")) || strings.Contains(h, run("b")) || strings.Contains(h, run("x")) {
					t.Fatalf("the outbox row carries the client's headers (%d bytes): %.200s", len(h), h)
				}
				if _, ok := m["tracestate"]; ok {
					t.Fatalf("the outbox row carries a tracestate: %.200s", h)
				}
				if tp := m["traceparent"]; tp != "" && (len(tp) != 55 || tc.record && strings.Contains(tp, clientTrace)) {
					t.Fatalf("traceparent %q: want the service's own trace when tracing is on, 55 characters always", tp)
				}
			}
		})
	}
}
