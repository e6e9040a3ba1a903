// Package loadgen is what the load generators of the chaos runs (cmd/chaos,
// cmd/regions) share: how a buyer reads the answer to a checkout.
package loadgen

import (
	"encoding/json"
	"fmt"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// Checkout is one checkout's answer as its buyer sees it.
type Checkout struct {
	// OrderID is the order's id when the checkout was acknowledged.
	OrderID string
	// OutOfStock: the answer was the userError OUT_OF_STOCK.
	OutOfStock bool
	// Err says why there is no order otherwise: a transport error, an HTTP status, a
	// GraphQL error's code (or message) or another userError's code.
	Err string
}

// ReadCheckout reads a vegeta result of the checkout mutation
// (`checkout(input) { order { id } userErrors { code } }`).
func ReadCheckout(res *vegeta.Result) Checkout {
	if res.Error != "" {
		return Checkout{Err: res.Error}
	}
	var a struct {
		Data *struct {
			Checkout *struct {
				Order      *struct{ ID string }
				UserErrors []struct{ Code string }
			}
		}
		Errors []struct {
			Message    string
			Extensions struct{ Code string }
		}
	}
	if err := json.Unmarshal(res.Body, &a); err != nil {
		return Checkout{Err: fmt.Sprintf("status %d", res.Code)}
	}
	var c *struct {
		Order      *struct{ ID string }
		UserErrors []struct{ Code string }
	}
	if a.Data != nil {
		c = a.Data.Checkout
	}
	switch {
	case c != nil && c.Order != nil:
		return Checkout{OrderID: c.Order.ID}
	case c != nil && len(c.UserErrors) > 0 && c.UserErrors[0].Code == "OUT_OF_STOCK":
		return Checkout{OutOfStock: true}
	case len(a.Errors) > 0 && a.Errors[0].Extensions.Code != "":
		return Checkout{Err: a.Errors[0].Extensions.Code}
	case len(a.Errors) > 0:
		return Checkout{Err: a.Errors[0].Message}
	case c != nil && len(c.UserErrors) > 0:
		return Checkout{Err: c.UserErrors[0].Code}
	}
	return Checkout{Err: fmt.Sprintf("status %d", res.Code)}
}
