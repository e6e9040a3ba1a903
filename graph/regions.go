package graph

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"

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

// withOtherRegions adds the caller's orders in the other regions to this region's page
// of them: each region is asked for the same page (a cursor of the list is a time and an
// id, the same in every region), and the merge keeps the first n, newest first. A region
// that cannot be reached leaves its orders out, and an error beside the data says so
// (REGION_UNAVAILABLE with retryAfter and the regions missing). A request another region
// forwarded here is that region asking for this region's part: it is not asked on.
func (r *Resolver) withOtherRegions(ctx context.Context, page checkout.OrderPage, n int, after *string) checkout.OrderPage {
	if r.Remote == nil || len(r.Regions.Names) < 2 || ctx.Value(forwardedKey{}) != nil {
		return page
	}
	token := auth.Token(ctx)
	if token == "" {
		return page // a partner by certificate: its orders are wherever it asks
	}
	type answer struct {
		orders []checkout.Order
		more   bool
		err    error
	}
	peers := r.Regions.Peers()
	answers := make([]answer, len(peers))
	var wg sync.WaitGroup
	for i, peer := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o, more, err := r.Remote.MyOrders(ctx, peer, token, n, after)
			answers[i] = answer{o, more, err}
		}()
	}
	wg.Wait()
	all, more := slices.Clone(page.Orders), page.HasNext
	var missing []string
	for i, a := range answers {
		if a.err != nil {
			missing = append(missing, peers[i])
			continue
		}
		all, more = append(all, a.orders...), more || a.more
	}
	slices.SortFunc(all, func(a, b checkout.Order) int { // newest first, as each region lists them
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
	if len(all) > n {
		all, more = all[:n], true
	}
	if len(missing) > 0 {
		graphql.AddError(ctx, &gqlerror.Error{Message: "the orders of regions " + strings.Join(missing, ", ") + " cannot be listed now; retry",
			Path: graphql.GetPath(ctx), Extensions: map[string]any{"code": gqlhttp.CodeRegionUnavailable, "retryAfter": 1, "regions": missing}})
	}
	return checkout.OrderPage{Orders: all, HasNext: more}
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
