// Package graph holds the GraphQL resolvers: they authorize, call the domain, and turn
// its results and errors into the schema's types. No SQL and no business rules here.
package graph

import (
	"time"

	"github.com/checkout-backend/checkout/internal/catalog"
	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/webhook"
)

//go:generate go tool gqlgen generate

// Resolver holds the resolvers' dependencies.
type Resolver struct {
	// Now is the clock, a dependency like the others (the sockets' token expiry):
	// required, never defaulted; Handler panics without it.
	Now     func() time.Time
	Service *checkout.Service
	Catalog *catalog.Service
	Orders  checkout.OrderStore
	Feed    checkout.StatusFeed
	// ObserveCheckout, when set, is told each checkout's outcome (placed, out_of_stock,
	// idempotent_replay, rejected, error) for metrics.
	ObserveCheckout func(outcome string)
	// Webhooks manages partner webhook endpoints.
	WebhookService *webhook.Service
	// Regions and Remote send reads, cancels and shipments of an order that lives in
	// another region to its home (the zero Regions or a nil Remote: every order here).
	Regions checkout.Regions
	Remote  checkout.RemoteOrders
}
