package checkout

import (
	"context"
	"errors"
	"fmt"
	"net"
)

// Code is a user-facing error code; the values mirror the GraphQL UserErrorCode enum.
type Code string

// The user error codes of the public contract.
const (
	OutOfStock           Code = "OUT_OF_STOCK"
	UnknownSKU           Code = "UNKNOWN_SKU"
	InvalidQuantity      Code = "INVALID_QUANTITY"
	CartNotFound         Code = "CART_NOT_FOUND"
	CartEmpty            Code = "CART_EMPTY"
	IdempotencyKeyReused Code = "IDEMPOTENCY_KEY_REUSED"
	InvalidPaymentToken  Code = "INVALID_PAYMENT_TOKEN"
	InvalidInput         Code = "INVALID_INPUT"
	OrderNotCancellable  Code = "ORDER_NOT_CANCELLABLE"
	InvalidTransition    Code = "INVALID_TRANSITION"
	InvalidWebhookURL    Code = "INVALID_WEBHOOK_URL"
	NotFound             Code = "NOT_FOUND"
)

// The user error codes this service adds to the contract (compatible extensions of
// UserErrorCode): purchase limits.
const (
	// PurchaseLimitExceeded: a line would take the customer past the product's units
	// per customer (its open and paid orders counted).
	PurchaseLimitExceeded Code = "PURCHASE_LIMIT_EXCEEDED"
	// TooManyUnpaidOrders: the customer already has the most orders awaiting payment.
	TooManyUnpaidOrders Code = "TOO_MANY_UNPAID_ORDERS"
	// TooManyFailedPayments: the customer's payments failed too often lately.
	TooManyFailedPayments Code = "TOO_MANY_FAILED_PAYMENTS"
)

// Error is a domain error a client may see: a code, the input field it concerns and a
// message. Anything that is not an *Error is internal: logged, never shown.
type Error struct {
	Code    Code
	Field   []string
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

// Errorf builds an *Error for the given code and field path.
func Errorf(code Code, field []string, format string, args ...any) *Error {
	return &Error{Code: code, Field: field, Message: fmt.Sprintf(format, args...)}
}

// AsError returns the *Error in err's chain, if any.
func AsError(err error) (*Error, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e, true
	}
	return nil, false
}

// ErrorCode returns the code of a domain error, or "" for an internal error.
func ErrorCode(err error) Code {
	if e, ok := AsError(err); ok {
		return e.Code
	}
	return ""
}

// Access errors, answered as GraphQL errors (not userErrors) with extensions.code.
var (
	ErrUnauthenticated = errors.New("authentication required")
	ErrForbidden       = errors.New("not allowed")
	// ErrUnavailable marks the failure of a dependency that is unreachable or too slow
	// right now (an adapter wraps its cause with it): nothing was half-written, and the
	// call may be retried (a checkout with the same idempotency key).
	ErrUnavailable = errors.New("service temporarily unavailable")
)

// IsUnavailable reports whether err is the failure of a dependency that is unreachable
// or too slow right now, as opposed to a bug: an error an adapter marked ErrUnavailable,
// or a deadline or network error of any other dependency.
func IsUnavailable(err error) bool {
	var ne net.Error
	return errors.Is(err, ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne)
}
