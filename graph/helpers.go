package graph

import (
	"context"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/checkout-backend/checkout/graph/gqlhttp"
	"github.com/checkout-backend/checkout/graph/model"
	"github.com/checkout-backend/checkout/internal/catalog"
	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/webhook"
)

// inputError answers a domain error of a field without a payload (upsertProduct,
// setStock) as a GraphQL error: extensions.code BAD_USER_INPUT, with the domain code
// in extensions.reason.
func inputError(ctx context.Context, err error) error {
	if e, ok := checkout.AsError(err); ok {
		return &gqlerror.Error{Message: e.Message, Path: graphql.GetPath(ctx),
			Extensions: map[string]any{"code": gqlhttp.CodeBadUserInput, "reason": string(e.Code), "field": e.Field}}
	}
	return err
}

func (r *mutationResolver) setCartItem(ctx context.Context, cartID, sku string, quantity int, add bool) (*model.CartPayload, error) {
	a, err := actor(ctx)
	if err != nil {
		return nil, err
	}
	c, err := r.Service.SetCartItem(ctx, a, cartID, sku, quantity, add)
	ue, err := userErrors(err)
	if err != nil {
		return nil, accessError(ctx, err)
	}
	if len(ue) > 0 {
		return &model.CartPayload{UserErrors: ue}, nil
	}
	return &model.CartPayload{Cart: &c, UserErrors: ue}, nil
}

func orderPayload(ctx context.Context, o checkout.Order, err error) (*model.OrderPayload, error) {
	ue, err := userErrors(err)
	if err != nil {
		return nil, accessError(ctx, err)
	}
	if len(ue) > 0 {
		return &model.OrderPayload{UserErrors: ue}, nil
	}
	return &model.OrderPayload{Order: &o, UserErrors: ue}, nil
}

// loadProduct reads a product through the request's dataloader when one is installed.
func loadProduct(ctx context.Context, c *catalog.Service, sku string) (*catalog.Product, error) {
	if l := loadersFrom(ctx); l != nil {
		p, err := l.Product.Load(ctx, sku)
		if err != nil || p.SKU == "" {
			return nil, err
		}
		return &p, nil
	}
	return c.Product(ctx, sku)
}

// observeCheckout tells ObserveCheckout (metrics) the outcome of a checkout.
func (r *Resolver) observeCheckout(err error, replay bool) {
	if r.ObserveCheckout == nil {
		return
	}
	switch {
	case err == nil && replay:
		r.ObserveCheckout("idempotent_replay")
	case err == nil:
		r.ObserveCheckout("placed")
	case checkout.ErrorCode(err) == checkout.OutOfStock:
		r.ObserveCheckout("out_of_stock")
	case checkout.ErrorCode(err) != "":
		r.ObserveCheckout("rejected")
	default:
		r.ObserveCheckout("error")
	}
}

func (r *subscriptionResolver) orderStatusChanged(ctx context.Context, orderID string) (<-chan *checkout.Order, error) {
	a, err := actor(ctx)
	if err != nil {
		return nil, err
	}
	if r.Feed == nil {
		return nil, gqlError(ctx, gqlhttp.CodeInternal, "subscriptions are not available on this instance")
	}
	// Subscribe first, then read the current state once: no change falls in between.
	// Nothing reaches the client before the read has authorized it.
	sctx, cancel := context.WithCancel(ctx)
	// The feed keys orders by their canonical id; any other spelling is no order.
	id, ok := checkout.CanonicalID(orderID)
	if !ok {
		cancel()
		return nil, gqlError(ctx, "NOT_FOUND", "order not found")
	}
	updates, reason, err := r.Feed.Subscribe(sctx, id)
	if err != nil {
		cancel()
		return nil, err
	}
	// An order of another region is read from its home (its changes reach this
	// instance's feed through the exchange of other regions' events).
	o, err := r.order(ctx, a, orderID)
	if err != nil || o == nil {
		cancel()
		if err != nil {
			return nil, err
		}
		return nil, gqlError(ctx, "NOT_FOUND", "order not found")
	}
	out := make(chan *checkout.Order, 1)
	go func() {
		defer close(out)
		defer cancel()
		last := *o
		first := last
		select {
		case out <- &first:
		case <-ctx.Done():
			return
		}
		if last.Status.Final() {
			return
		}
		for {
			select {
			case <-ctx.Done():
				return
			case u, ok := <-updates:
				if !ok {
					if err := reason(); err != nil {
						transport.AddSubscriptionError(ctx, &gqlerror.Error{Message: err.Error(), Extensions: map[string]any{"code": "SLOW_SUBSCRIBER"}})
					}
					return
				}
				if u.Sequence <= last.Sequence {
					continue // already sent (a replay or a resync)
				}
				// Items, createdAt and the expiry never change: keep them from the read.
				last.Status, last.Sequence, last.UpdatedAt = u.Status, u.Sequence, u.UpdatedAt
				if u.TrackingNumber != nil {
					last.TrackingNumber = u.TrackingNumber
				}
				if u.PaymentFailureReason != nil {
					last.PaymentFailureReason = u.PaymentFailureReason
				}
				next := last
				select {
				case out <- &next:
				case <-ctx.Done():
					return
				}
				if last.Status.Final() {
					return
				}
			}
		}
	}()
	return out, nil
}

func webhookPayload(ctx context.Context, w webhook.Webhook, err error) (*model.WebhookPayload, error) {
	ue, err := userErrors(err)
	if err != nil {
		return nil, accessError(ctx, err)
	}
	if len(ue) > 0 {
		return &model.WebhookPayload{UserErrors: ue}, nil
	}
	return &model.WebhookPayload{Webhook: &w, UserErrors: ue}, nil
}
