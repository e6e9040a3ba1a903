package store

import (
	"context"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/extra/bunotel"
	"go.opentelemetry.io/otel/trace"
)

// TraceHook makes a client span of every SQL query run with a traced context
// (Options.QueryHook). Statements are recorded with their placeholders, never with the
// values bound to them, so no token or personal data reaches a span.
func TraceHook(dbName string) bun.QueryHook {
	return traceHook{bunotel.NewQueryHook(bunotel.WithDBName(dbName), bunotel.WithFormattedQueries(false))}
}

// traceHook finishes a query's span only when it records. bunotel's AfterQuery also
// records a duration histogram on OpenTelemetry's meter provider, building its attribute
// set on every query; the service sets no meter provider (its metrics are Prometheus's),
// so the histogram went nowhere, and building its attributes was 3 to 4% of the
// service's CPU under load (pprof at four buyers, 2026-12-07).
type traceHook struct{ inner *bunotel.QueryHook }

// Init is bunotel's: the pool's statistics on the meter provider (none: nothing is kept).
func (h traceHook) Init(db *bun.DB) { h.inner.Init(db) }

func (h traceHook) BeforeQuery(ctx context.Context, ev *bun.QueryEvent) context.Context {
	return h.inner.BeforeQuery(ctx, ev)
}

func (h traceHook) AfterQuery(ctx context.Context, ev *bun.QueryEvent) {
	if trace.SpanFromContext(ctx).IsRecording() {
		h.inner.AfterQuery(ctx, ev)
	}
}
