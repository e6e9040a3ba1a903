// Package region forwards an operation on an order that lives in another region to
// that region's API (checkout.RemoteOrders), over its public GraphQL endpoint, with the
// caller's own token: the home region authorizes it as any request of its own.
package region

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/checkout-backend/checkout/internal/checkout"
)

// Forwarder sends operations on other regions' orders to their homes.
type Forwarder struct {
	// Local is this region's name, sent in checkout.ForwardedHeader.
	Local string
	// URLs are the regions' API base addresses (REGION_URLS: https://eu.api.example).
	URLs map[string]string
	// Client sends the requests (nil: one with a 5 s timeout).
	Client *http.Client
}

var _ checkout.RemoteOrders = (*Forwarder)(nil)

const orderFields = `id status totalCents currency createdAt updatedAt reservationExpiresAt trackingNumber paymentFailureReason
	items { sku quantity unitPriceCents }`

// Order reads the order id at home with the caller's token (nil: not found there).
func (f *Forwarder) Order(ctx context.Context, home, token, id string) (*checkout.Order, error) {
	var data struct{ Order *checkout.Order }
	if err := f.do(ctx, home, token, `query($id: ID!) { order(id: $id) { `+orderFields+` } }`, map[string]any{"id": id}, &data); err != nil {
		return nil, err
	}
	return data.Order, nil
}

// CancelOrder cancels the order id at home.
func (f *Forwarder) CancelOrder(ctx context.Context, home, token, id string) (checkout.Order, error) {
	var data struct{ CancelOrder payloadJSON }
	err := f.do(ctx, home, token, `mutation($id: ID!) { cancelOrder(id: $id) { order { `+orderFields+` } userErrors { code field message } } }`,
		map[string]any{"id": id}, &data)
	if err != nil {
		return checkout.Order{}, err
	}
	return data.CancelOrder.result()
}

// ShipOrder ships the order id at home.
func (f *Forwarder) ShipOrder(ctx context.Context, home, token, id, tracking string) (checkout.Order, error) {
	var data struct{ ShipOrder payloadJSON }
	err := f.do(ctx, home, token, `mutation($id: ID!, $t: String!) { shipOrder(id: $id, trackingNumber: $t) { order { `+orderFields+` } userErrors { code field message } } }`,
		map[string]any{"id": id, "t": tracking}, &data)
	if err != nil {
		return checkout.Order{}, err
	}
	return data.ShipOrder.result()
}

// MyOrders reads the caller's first orders at home after the cursor (the cursor of a
// customer's order list is a time and an id: the same in every region).
func (f *Forwarder) MyOrders(ctx context.Context, home, token string, first int, after *string) ([]checkout.Order, bool, error) {
	var data struct {
		MyOrders struct {
			Edges    []struct{ Node checkout.Order }
			PageInfo struct{ HasNextPage bool }
		}
	}
	err := f.do(ctx, home, token, `query($n: Int, $a: String) { myOrders(first: $n, after: $a) { edges { node { `+orderFields+` } } pageInfo { hasNextPage } } }`,
		map[string]any{"n": first, "a": after}, &data)
	if err != nil {
		return nil, false, err
	}
	out := make([]checkout.Order, len(data.MyOrders.Edges))
	for i, e := range data.MyOrders.Edges {
		out[i] = e.Node
	}
	return out, data.MyOrders.PageInfo.HasNextPage, nil
}

// do posts one operation to home's API and decodes its data into out. A home with no
// address, a transport error, a timeout or a 5xx is checkout.ErrRegionUnavailable; a
// GraphQL error of the home region comes back as an error naming its code.
func (f *Forwarder) do(ctx context.Context, home, token, query string, vars map[string]any, out any) error {
	base, ok := f.URLs[home]
	if !ok {
		return fmt.Errorf("%w: no address for region %q (REGION_URLS)", checkout.ErrRegionUnavailable, home)
	}
	body, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(base, "/")+"/graphql", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: %v", checkout.ErrRegionUnavailable, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/graphql-response+json")
	req.Header.Set(checkout.ForwardedHeader, f.Local)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	client := f.Client
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", checkout.ErrRegionUnavailable, home, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
		return fmt.Errorf("%w: %s answered %d", checkout.ErrRegionUnavailable, home, resp.StatusCode)
	}
	var r struct {
		Data   json.RawMessage
		Errors []struct {
			Message    string
			Extensions struct{ Code string }
		}
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&r); err != nil {
		return fmt.Errorf("%w: %s: unreadable answer (%d): %v", checkout.ErrRegionUnavailable, home, resp.StatusCode, err)
	}
	if len(r.Errors) > 0 {
		e := r.Errors[0]
		switch e.Extensions.Code {
		case "UNAUTHENTICATED":
			return checkout.ErrUnauthenticated
		case "FORBIDDEN":
			return checkout.ErrForbidden
		case "SERVICE_UNAVAILABLE", "REGION_UNAVAILABLE":
			return fmt.Errorf("%w: %s: %s", checkout.ErrRegionUnavailable, home, e.Message)
		}
		return &RemoteError{Region: home, Code: e.Extensions.Code, Message: e.Message}
	}
	return json.Unmarshal(r.Data, out)
}

// RemoteError is a GraphQL error an order's home region answered.
type RemoteError struct{ Region, Code, Message string }

func (e *RemoteError) Error() string {
	return fmt.Sprintf("region %s: %s (%s)", e.Region, e.Message, e.Code)
}

// payloadJSON is an OrderPayload as the home region answers it. An order decodes
// straight into checkout.Order: encoding/json matches the contract's field names
// (totalCents, createdAt, ...) to its fields without regard to case.
type payloadJSON struct {
	Order      *checkout.Order
	UserErrors []struct {
		Code    checkout.Code
		Field   []string
		Message string
	}
}

func (p payloadJSON) result() (checkout.Order, error) {
	if len(p.UserErrors) > 0 {
		e := p.UserErrors[0]
		return checkout.Order{}, checkout.Errorf(e.Code, e.Field, "%s", e.Message)
	}
	if p.Order == nil {
		return checkout.Order{}, errors.New("region: an answer with neither an order nor a user error")
	}
	return *p.Order, nil
}
