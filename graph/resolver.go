// Package graph holds the GraphQL resolvers: they authorize, call the domain, and turn
// its results and errors into the schema's types. No SQL and no business rules here.
package graph

import (
	"context"

	"github.com/checkout-backend/checkout/internal/catalog"
	"github.com/checkout-backend/checkout/internal/checkout"
)

//go:generate go tool gqlgen generate

// StatusFeed delivers an order's status changes to subscribers (fed by RabbitMQ).
type StatusFeed interface {
	// Subscribe returns the order's updates until ctx ends; the channel is closed then,
	// or when the subscriber is too slow (the error says why).
	Subscribe(ctx context.Context, orderID string) (<-chan checkout.Order, func() error, error)
}

// Resolver holds the resolvers' dependencies.
type Resolver struct {
	Service *checkout.Service
	Catalog catalog.Store
	Orders  checkout.OrderStore
	Feed    StatusFeed
}
