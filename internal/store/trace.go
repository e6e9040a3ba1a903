package store

import (
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/extra/bunotel"
)

// TraceHook makes a client span of every SQL query run with a traced context
// (Options.QueryHook). Statements are recorded with their placeholders, never with the
// values bound to them, so no token or personal data reaches a span.
func TraceHook(dbName string) bun.QueryHook {
	return bunotel.NewQueryHook(bunotel.WithDBName(dbName), bunotel.WithFormattedQueries(false))
}
