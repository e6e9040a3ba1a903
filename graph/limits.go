package graph

import (
	"math"

	"github.com/checkout-backend/checkout/graph/generated"
	"github.com/checkout-backend/checkout/graph/model"
	"github.com/checkout-backend/checkout/internal/checkout"
)

// Costs of the complexity functions. A field costs 1 plus what it selects; a list costs
// what one element selects times the number of elements it can hold.
const (
	// itemsPerOrderEstimate stands for the items of an order or a cart, a list with no
	// page size (an order may hold up to checkout.MaxLines; most hold a few).
	itemsPerOrderEstimate = 10
	// warehousesEstimate stands for the warehouses of a SKU in inventory.
	warehousesEstimate = 10
	// mutationCost is the base cost of a mutation that writes (a transaction or more).
	mutationCost = 10
	// subscriptionCost is the base cost of a subscription (a long-lived connection).
	subscriptionCost = 20
)

// Complexity returns the schema's complexity functions for gqlgen's complexity limit:
// a connection counts its page size (first, default 20, at most 100) as the multiplier
// of what each edge selects.
func Complexity() generated.ComplexityRoot {
	var c generated.ComplexityRoot
	c.Query.Products = func(child int, first *int, _ *string) int { return page(first, child) }
	c.Query.MyOrders = func(child int, first *int, _ *string) int { return page(first, child) }
	c.Query.WebhookDeliveries = func(child int, _ string, first *int, _ *string) int { return page(first, child) }
	c.Query.Inventory = func(child int, _ string) int { return list(warehousesEstimate, child) }
	c.Order.Items = func(child int) int { return list(itemsPerOrderEstimate, child) }
	c.Cart.Items = func(child int) int { return list(itemsPerOrderEstimate, child) }

	c.Mutation.UpsertProduct = func(child int, _ model.ProductInput) int { return mutationCost + child }
	c.Mutation.SetStock = func(child int, _, _ string, _ int) int { return mutationCost + child }
	c.Mutation.CreateCart = func(child int) int { return mutationCost + child }
	c.Mutation.AddCartItem = func(child int, _, _ string, _ int) int { return mutationCost + child }
	c.Mutation.UpdateCartItem = func(child int, _, _ string, _ int) int { return mutationCost + child }
	c.Mutation.RemoveCartItem = func(child int, _, _ string) int { return mutationCost + child }
	c.Mutation.Checkout = func(child int, in model.CheckoutInput) int {
		return mutationCost + len(in.Items) + child
	}
	c.Mutation.CancelOrder = func(child int, _ string) int { return mutationCost + child }
	c.Mutation.ShipOrder = func(child int, _, _ string) int { return mutationCost + child }

	c.Subscription.OrderStatusChanged = func(child int, _ string) int { return subscriptionCost + child }
	return c
}

// page is the cost of a connection: first clamped to 1..MaxPageSize (a value outside is
// refused by the resolver with its own message), times what an edge selects.
func page(first *int, child int) int {
	n := 20
	if first != nil {
		n = min(max(*first, 1), checkout.MaxPageSize)
	}
	return list(n, child)
}

// list is 1 + n*child, saturating.
func list(n, child int) int {
	if child > 0 && n > (math.MaxInt-1)/child {
		return math.MaxInt
	}
	return 1 + n*child
}
