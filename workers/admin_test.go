package workers_test

import "github.com/checkout-backend/checkout/internal/checkout"

// admin is the caller of the webhook operations.
var admin = checkout.Actor{CustomerID: "ops", Admin: true}
