package gqlhttp

import (
	"context"
	"math"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/checkout-backend/checkout/internal/platform/overload"
)

// OperationCost is a gqlgen extension that holds the validated operation to the rate the
// shedder charged at the door (internal/platform/overload): a mutation with more than
// one checkout root field is refused (TOO_MANY_CHECKOUTS: one checkout per request, as
// no storefront needs more and a card tester wants many), and what the operation costs
// beyond what the door saw (a persisted query sent by hash alone, which the door cannot
// read) is taken from the client's buckets, or the operation is refused RATE_LIMITED
// (429 with Retry-After). Root fields are counted as they run: fragments expanded,
// @skip and @include applied. Subscriptions take their tokens on the socket.
type OperationCost struct{}

var _ interface {
	graphql.HandlerExtension
	graphql.OperationContextMutator
} = OperationCost{}

// ExtensionName names the extension for gqlgen.
func (OperationCost) ExtensionName() string { return "OperationCost" }

// Validate accepts any schema.
func (OperationCost) Validate(graphql.ExecutableSchema) error { return nil }

// MutateOperationContext refuses an operation with several checkouts, or over its
// client's rate.
func (OperationCost) MutateOperationContext(ctx context.Context, oc *graphql.OperationContext) *gqlerror.Error {
	op := oc.Operation
	if op == nil || op.Operation == ast.Subscription {
		return nil
	}
	var c overload.Cost
	for _, f := range graphql.CollectFields(oc, op.SelectionSet, nil) {
		if f.Name == "__typename" {
			continue
		}
		c.Operations++
		if op.Operation == ast.Mutation && f.Name == "checkout" {
			c.Checkouts++
		}
	}
	if c.Checkouts > 1 {
		e := newError(CodeTooManyCheckouts, "the operation has %d checkout fields: one checkout per request", c.Checkouts)
		e.Extensions["limit"] = 1
		e.Extensions["actual"] = c.Checkouts
		return e
	}
	if wait, ok := overload.Charge(ctx, c); !ok {
		e := newError(CodeRateLimited, "too many requests from this client; retry later")
		e.Extensions["retryAfter"] = max(1, int(math.Ceil(wait.Seconds())))
		return e
	}
	return nil
}
