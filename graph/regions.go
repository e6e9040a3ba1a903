package graph

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/checkout-backend/checkout/graph/gqlhttp"
	"github.com/checkout-backend/checkout/graph/model"
	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/platform/auth"
)

// An order lives in one region, its home (its id says which: checkout.Regions). Reading,
// cancelling or shipping an order of another region goes to that region's API with the
// caller's own token (r.Remote); while that region cannot be reached the answer is
// REGION_UNAVAILABLE, to retry.

type forwardedKey struct{}

// markForwarded notes, in the request's context, a request another region forwarded
// here (checkout.ForwardedHeader): such a request is never forwarded again.
func markForwarded(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if from := req.Header.Get(checkout.ForwardedHeader); from != "" {
			req = req.WithContext(context.WithValue(req.Context(), forwardedKey{}, from))
		}
		next.ServeHTTP(w, req)
	})
}

// remoteHome tells whether the order id lives in another region, and which; token is
// the caller's, to forward with.
func (r *Resolver) remoteHome(ctx context.Context, id string) (home, token string, remote bool, err error) {
	if r.Remote == nil || len(r.Regions.Names) == 0 {
		return "", "", false, nil
	}
	home, ok := r.Regions.HomeOf(id)
	if !ok || home == r.Regions.Local {
		return "", "", false, nil
	}
	if from, _ := ctx.Value(forwardedKey{}).(string); from != "" {
		return "", "", false, regionError(ctx, fmt.Sprintf("order %s lives in region %s, but region %s forwarded it here: the regions' REGIONS differ", id, home, from))
	}
	if token = auth.Token(ctx); token == "" {
		if a, _ := auth.FromContext(ctx); a == (checkout.Actor{}) {
			return "", "", false, accessError(ctx, checkout.ErrUnauthenticated)
		}
		return "", "", false, gqlError(ctx, gqlhttp.CodeForbidden,
			fmt.Sprintf("order %s lives in region %s: ask that region's API (a request is forwarded there with its bearer token only)", id, home))
	}
	return home, token, true, nil
}

// order reads an order wherever it lives: here, or in its home region.
func (r *Resolver) order(ctx context.Context, a checkout.Actor, id string) (*checkout.Order, error) {
	if home, token, remote, err := r.remoteHome(ctx, id); err != nil {
		return nil, err
	} else if remote {
		o, err := r.Remote.Order(ctx, home, token, id)
		return o, remoteError(ctx, err)
	}
	o, err := r.Service.Order(ctx, a, id)
	return o, accessError(ctx, err)
}

// remoteError turns what the home region answered into this API's errors.
func remoteError(ctx context.Context, err error) error {
	if errors.Is(err, checkout.ErrRegionUnavailable) {
		return regionError(ctx, "the region this order lives in cannot be reached now; retry")
	}
	return accessError(ctx, err)
}

// remotePayload is orderPayload for what the home region answered.
func remotePayload(ctx context.Context, o checkout.Order, err error) (*model.OrderPayload, error) {
	if errors.Is(err, checkout.ErrRegionUnavailable) {
		return nil, remoteError(ctx, err)
	}
	return orderPayload(ctx, o, err)
}

func regionError(ctx context.Context, msg string) error {
	return &gqlerror.Error{Message: msg, Path: graphql.GetPath(ctx),
		Extensions: map[string]any{"code": gqlhttp.CodeRegionUnavailable, "retryAfter": 1}}
}
