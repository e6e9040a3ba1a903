package store

import (
	"context"
	"testing"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/extra/bunotel"
)

// BenchmarkTraceHook_UntracedQuery is what the SQL hook costs a query whose context
// carries no recording span, as most of a paid order's queries run (go test
// ./internal/store -run XXX -bench TraceHook -benchmem): bunotel's hook alone, then the
// service's.
func BenchmarkTraceHook_UntracedQuery(b *testing.B) {
	for _, c := range []struct {
		name string
		hook bun.QueryHook
	}{
		{"bunotel", bunotel.NewQueryHook(bunotel.WithDBName("checkout"), bunotel.WithFormattedQueries(false))},
		{"service", TraceHook("checkout")},
	} {
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				ev := &bun.QueryEvent{Query: "EXECUTE place_prices('{SKU-1}')", StartTime: time.Now()}
				c.hook.AfterQuery(c.hook.BeforeQuery(ctx, ev), ev)
			}
		})
	}
}
