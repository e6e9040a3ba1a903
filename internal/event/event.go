// Package event defines the one envelope every domain event travels in: written to the
// outbox table in the transaction of its change, published by the relay as the AMQP body
// (ID as message-id), and decoded by workers, the subscription feed and webhooks.
package event

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"
)

// Event types (also the AMQP routing keys).
const (
	OrderPlaced        = "order.placed"
	OrderPaid          = "order.paid"
	OrderPaymentFailed = "order.payment_failed"
	OrderExpired       = "order.expired"
	OrderCancelled     = "order.cancelled"
	OrderShipped       = "order.shipped"

	// PaymentRefundRequested asks the refund worker to give an order's payment back
	// (a paid order cancelled, or a payment that arrived after its order expired).
	PaymentRefundRequested = "payment.refund_requested"

	// CartCreated announces a new cart, for the carts-to-orders conversion of
	// analytics. It is not an order event: partner webhooks bind OrderTypes and the
	// status feed StatusChangeTypes, so they never see it.
	CartCreated = "cart.created"
)

// Stock moving between regions (escrow): a region short of a SKU asks another for
// some (stock.transfer_requested); the giver debits what it can spare and announces it
// in the same transaction (stock.transfer_granted); the asker credits each grant once.
const (
	StockTransferRequested = "stock.transfer_requested"
	StockTransferGranted   = "stock.transfer_granted"
)

// ProductUpserted announces a product created or changed by an admin, in a deployment
// of several regions: the other regions apply it to their copy of the catalog (stock
// is not in it: each region's share is its own).
const ProductUpserted = "product.upserted"

// ProductPayload is the payload of product.upserted: the product as it is after the
// change, when and in which region it was made.
type ProductPayload struct {
	SKU            string    `json:"sku"`
	Name           string    `json:"name"`
	PriceCents     int64     `json:"priceCents"`
	Currency       string    `json:"currency"`
	MaxPerCustomer *int      `json:"maxPerCustomer"`
	UpdatedAt      time.Time `json:"updatedAt"`
	Region         string    `json:"region"`
}

// TransferPayload is the payload of stock.transfer_requested (Quantity asked) and of
// stock.transfer_granted (Quantity given, 0 when the giver had nothing to spare).
type TransferPayload struct {
	TransferID string `json:"transferId"`
	SKU        string `json:"sku"`
	Quantity   int    `json:"quantity"`
	// From gives, To receives and credits Warehouse, one of its own.
	From      string `json:"fromRegion"`
	To        string `json:"toRegion"`
	Warehouse string `json:"warehouse"`
	// SoldOut, on a request, says the asker has nothing left to sell of the SKU: the
	// giver then shares what it has (half, rounded up) even below what it keeps for its
	// own buyers, so the last units of a scarce SKU go where they are wanted instead of
	// staying stranded in a region whose buyers left.
	SoldOut bool `json:"soldOut,omitempty"`
}

// CartPayload is the payload of cart.created.
type CartPayload struct {
	CartID     string    `json:"cartId"`
	CustomerID string    `json:"customerId"`
	CreatedAt  time.Time `json:"createdAt"`
}

// RefundPayload is the payload of payment.refund_requested.
type RefundPayload struct {
	OrderID string `json:"orderId"`
	Reason  string `json:"reason"`
}

// OrderTypes lists every order event type, in status-flow order.
var OrderTypes = []string{OrderPlaced, OrderPaid, OrderPaymentFailed, OrderExpired, OrderCancelled, OrderShipped}

// StatusChangeTypes are the order events that change a placed order's status: every
// order event but order.placed. A subscriber to an order's status can only subscribe
// once the order exists, and reads its current state when it does, so order.placed is
// never news to one: the status feed binds these alone, one delivery per order and
// instance fewer.
var StatusChangeTypes = OrderTypes[1:]

// Envelope is a domain event.
type Envelope struct {
	ID          string            `json:"id"`
	Type        string            `json:"type"`
	AggregateID string            `json:"aggregateId"`
	OccurredAt  time.Time         `json:"occurredAt"`
	Payload     json.RawMessage   `json:"payload"`
	Headers     map[string]string `json:"headers,omitempty"`
	// Destination, when set, is the one consumer the envelope goes to (a scheduled
	// retry), instead of every consumer of its type. It travels in the outbox row, not
	// in the body.
	Destination string `json:"-"`
}

// AttemptHeader counts a consumer's attempts at an event (1 for the first delivery).
const AttemptHeader = "x-attempt"

// ToRegionHeader addresses an event to one region (a transfer's request to the giver,
// its grant to the asker): its routing key then ends in that region's name, so the
// region's own consumers and the queue that carries events to it across the WAN
// (RabbitMQ's shovel) each bind only what is addressed to them, and nothing is sent
// back where it came from.
const ToRegionHeader = "x-to-region"

// RoutingKey is the key the envelope is published with: its type, followed by the
// region it is addressed to, if any (stock.transfer_granted.eu-west).
func (e Envelope) RoutingKey() string {
	if r := e.Headers[ToRegionHeader]; r != "" {
		return AddressedTo(e.Type, r)
	}
	return e.Type
}

// AddressedTo is the routing key of events of type typ addressed to region.
func AddressedTo(typ, region string) string { return typ + "." + region }

// New makes an envelope with a fresh id for the given payload.
func New(typ, aggregateID string, occurredAt time.Time, payload any) (Envelope, error) {
	b, err := json.Marshal(payload)
	if err != nil {
		return Envelope{}, err
	}
	return Envelope{
		ID:          uuid.Must(uuid.NewV7()).String(),
		Type:        typ,
		AggregateID: aggregateID,
		OccurredAt:  occurredAt.UTC(),
		Payload:     b,
		Headers:     map[string]string{},
	}, nil
}

// OrderPayload is the payload of every order.* event.
type OrderPayload struct {
	Order OrderData `json:"order"`
	// CustomerID lets consumers authorize subscribers; it is not part of partner webhooks.
	CustomerID string `json:"customerId"`
	// CartID is the cart an order.placed came from ("" for a checkout of items); for
	// analytics, not part of partner webhooks.
	CartID string `json:"cartId,omitempty"`
}

// OrderItemData is one line of an order as order.placed announces it.
type OrderItemData struct {
	SKU            string `json:"sku"`
	Quantity       int    `json:"quantity"`
	UnitPriceCents int64  `json:"unitPriceCents"`
}

// OrderData is the order as an event announces it (the partner webhook's data.order).
type OrderData struct {
	ID                   string    `json:"id"`
	Status               string    `json:"status"`
	Sequence             int       `json:"sequence"`
	TotalCents           int64     `json:"totalCents"`
	Currency             string    `json:"currency"`
	UpdatedAt            time.Time `json:"updatedAt"`
	TrackingNumber       *string   `json:"trackingNumber,omitempty"`
	PaymentFailureReason *string   `json:"paymentFailureReason,omitempty"`
	// Items are the order's lines, in order.placed only (for analytics); partner
	// webhook bodies list their own fields (webhook.Body) and leave them out.
	Items []OrderItemData `json:"items,omitempty"`
}

// TypeForStatus is the event type announcing an order's move to status.
func TypeForStatus(status string) string {
	switch status {
	case "PENDING_PAYMENT":
		return OrderPlaced
	case "PAID":
		return OrderPaid
	case "PAYMENT_FAILED":
		return OrderPaymentFailed
	case "EXPIRED":
		return OrderExpired
	case "CANCELLED":
		return OrderCancelled
	case "SHIPPED":
		return OrderShipped
	}
	return ""
}
