// Package analytics turns domain events into facts (orders, order lines, payments,
// status changes, carts and stock observations) and hands them, in bounded batches, to a
// Sink: Parquet files (parquetsink, the default), Elasticsearch (esink) or BigQuery
// (bqsink). Its consumer has a queue of its own, so it never slows the saga, and acks an
// event only once the sink holds its facts durably. Every fact row carries the id of the
// event it came from, so a redelivered event can always be told apart from a new one.
package analytics

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/checkout-backend/checkout/internal/event"
)

// Table names: the Parquet directories (table=NAME), the Elasticsearch index infix and
// the BigQuery table names.
const (
	TableOrders        = "orders"
	TableOrderLines    = "order_lines"
	TablePayments      = "payments"
	TableStatusChanges = "status_changes"
	TableCarts         = "carts"
	TableStock         = "stock"
)

// Tables lists every table in a stable order.
var Tables = []string{TableOrders, TableOrderLines, TablePayments, TableStatusChanges, TableCarts, TableStock}

// Payment outcomes.
const (
	PaymentSucceeded = "succeeded"
	PaymentFailed    = "failed"
)

// Order is one placed order (from order.placed).
type Order struct {
	EventID    string    `parquet:"event_id" json:"event_id"`
	OrderID    string    `parquet:"order_id" json:"order_id"`
	CustomerID string    `parquet:"customer_id" json:"customer_id"`
	CartID     string    `parquet:"cart_id" json:"cart_id"`
	PlacedAt   time.Time `parquet:"placed_at,timestamp(microsecond)" json:"placed_at"`
	TotalCents int64     `parquet:"total_cents" json:"total_cents"`
	Currency   string    `parquet:"currency" json:"currency"`
	Lines      int32     `parquet:"lines" json:"lines"`
	Units      int32     `parquet:"units" json:"units"`
}

// OrderLine is one line of a placed order.
type OrderLine struct {
	EventID        string    `parquet:"event_id" json:"event_id"`
	OrderID        string    `parquet:"order_id" json:"order_id"`
	LineNo         int32     `parquet:"line_no" json:"line_no"`
	SKU            string    `parquet:"sku" json:"sku"`
	Quantity       int32     `parquet:"quantity" json:"quantity"`
	UnitPriceCents int64     `parquet:"unit_price_cents" json:"unit_price_cents"`
	Currency       string    `parquet:"currency" json:"currency"`
	PlacedAt       time.Time `parquet:"placed_at,timestamp(microsecond)" json:"placed_at"`
}

// Payment is the outcome of an order's payment (order.paid or order.payment_failed).
type Payment struct {
	EventID     string    `parquet:"event_id" json:"event_id"`
	OrderID     string    `parquet:"order_id" json:"order_id"`
	Outcome     string    `parquet:"outcome" json:"outcome"`
	Reason      string    `parquet:"reason" json:"reason"`
	AmountCents int64     `parquet:"amount_cents" json:"amount_cents"`
	Currency    string    `parquet:"currency" json:"currency"`
	OccurredAt  time.Time `parquet:"occurred_at,timestamp(microsecond)" json:"occurred_at"`
}

// StatusChange is one order status change (every order.* event).
type StatusChange struct {
	EventID    string    `parquet:"event_id" json:"event_id"`
	OrderID    string    `parquet:"order_id" json:"order_id"`
	Status     string    `parquet:"status" json:"status"`
	Sequence   int32     `parquet:"sequence" json:"sequence"`
	OccurredAt time.Time `parquet:"occurred_at,timestamp(microsecond)" json:"occurred_at"`
}

// Cart is a created cart (cart.created).
type Cart struct {
	EventID    string    `parquet:"event_id" json:"event_id"`
	CartID     string    `parquet:"cart_id" json:"cart_id"`
	CustomerID string    `parquet:"customer_id" json:"customer_id"`
	CreatedAt  time.Time `parquet:"created_at,timestamp(microsecond)" json:"created_at"`
}

// Stock is an observation of a SKU's available units (on hand less reserved, over every
// warehouse), taken by the consumer when it flushes a batch holding lines of that SKU.
// Its EventID is the id of the observation itself. A SKU first seen at 0 sold out: the
// report takes the last order of it placed before that moment as the one that took the
// last unit.
type Stock struct {
	EventID    string    `parquet:"event_id" json:"event_id"`
	SKU        string    `parquet:"sku" json:"sku"`
	Available  int32     `parquet:"available" json:"available"`
	ObservedAt time.Time `parquet:"observed_at,timestamp(microsecond)" json:"observed_at"`
}

// Batch is a set of facts written together.
type Batch struct {
	Orders        []Order
	OrderLines    []OrderLine
	Payments      []Payment
	StatusChanges []StatusChange
	Carts         []Cart
	Stock         []Stock
}

// Len is the number of rows of b.
func (b Batch) Len() int {
	return len(b.Orders) + len(b.OrderLines) + len(b.Payments) + len(b.StatusChanges) + len(b.Carts) + len(b.Stock)
}

// Append adds o's rows to b.
func (b *Batch) Append(o Batch) {
	b.Orders = append(b.Orders, o.Orders...)
	b.OrderLines = append(b.OrderLines, o.OrderLines...)
	b.Payments = append(b.Payments, o.Payments...)
	b.StatusChanges = append(b.StatusChanges, o.StatusChanges...)
	b.Carts = append(b.Carts, o.Carts...)
	b.Stock = append(b.Stock, o.Stock...)
}

// Types are the event types the analytics consumer takes.
var Types = append(append([]string{}, event.OrderTypes...), event.CartCreated)

// Facts turns one event into its facts. Event types it does not know give no facts; a
// payload it cannot decode is an error (the consumer dead-letters it).
func Facts(env event.Envelope) (Batch, error) {
	var b Batch
	switch env.Type {
	case event.CartCreated:
		var p event.CartPayload
		if err := json.Unmarshal(env.Payload, &p); err != nil || p.CartID == "" {
			return b, fmt.Errorf("decode %s %s: %v", env.Type, env.ID, orMissing(err, "cartId"))
		}
		at := p.CreatedAt
		if at.IsZero() {
			at = env.OccurredAt
		}
		b.Carts = append(b.Carts, Cart{EventID: env.ID, CartID: p.CartID, CustomerID: p.CustomerID, CreatedAt: at.UTC()})
		return b, nil
	case event.OrderPlaced, event.OrderPaid, event.OrderPaymentFailed, event.OrderExpired, event.OrderCancelled, event.OrderShipped:
	default:
		return b, nil
	}
	var p event.OrderPayload
	if err := json.Unmarshal(env.Payload, &p); err != nil || p.Order.ID == "" {
		return b, fmt.Errorf("decode %s %s: %v", env.Type, env.ID, orMissing(err, "order.id"))
	}
	o := p.Order
	at := o.UpdatedAt.UTC()
	if o.UpdatedAt.IsZero() {
		at = env.OccurredAt.UTC()
	}
	b.StatusChanges = append(b.StatusChanges, StatusChange{EventID: env.ID, OrderID: o.ID, Status: o.Status,
		Sequence: int32(o.Sequence), OccurredAt: at})
	switch env.Type {
	case event.OrderPlaced:
		var units int32
		for i, it := range o.Items {
			units += int32(it.Quantity)
			b.OrderLines = append(b.OrderLines, OrderLine{EventID: env.ID, OrderID: o.ID, LineNo: int32(i + 1), SKU: it.SKU,
				Quantity: int32(it.Quantity), UnitPriceCents: it.UnitPriceCents, Currency: o.Currency, PlacedAt: at})
		}
		b.Orders = append(b.Orders, Order{EventID: env.ID, OrderID: o.ID, CustomerID: p.CustomerID, CartID: p.CartID,
			PlacedAt: at, TotalCents: o.TotalCents, Currency: o.Currency, Lines: int32(len(o.Items)), Units: units})
	case event.OrderPaid:
		b.Payments = append(b.Payments, Payment{EventID: env.ID, OrderID: o.ID, Outcome: PaymentSucceeded,
			AmountCents: o.TotalCents, Currency: o.Currency, OccurredAt: at})
	case event.OrderPaymentFailed:
		reason := ""
		if o.PaymentFailureReason != nil {
			reason = *o.PaymentFailureReason
		}
		b.Payments = append(b.Payments, Payment{EventID: env.ID, OrderID: o.ID, Outcome: PaymentFailed, Reason: reason,
			AmountCents: o.TotalCents, Currency: o.Currency, OccurredAt: at})
	}
	return b, nil
}

func orMissing(err error, field string) any {
	if err != nil {
		return err
	}
	return field + " missing"
}

// EventTime is the time a row is partitioned by: its event's time, so a redelivered
// event's rows land in the same partition as the first copy.
func EventTime(row any) time.Time {
	switch r := row.(type) {
	case Order:
		return r.PlacedAt
	case OrderLine:
		return r.PlacedAt
	case Payment:
		return r.OccurredAt
	case StatusChange:
		return r.OccurredAt
	case Cart:
		return r.CreatedAt
	case Stock:
		return r.ObservedAt
	}
	return time.Time{}
}
