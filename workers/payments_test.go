package workers_test

import (
	"context"
	"encoding/json"
	"io"
	"testing"
	"time"

	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/event"
	clog "github.com/checkout-backend/checkout/internal/platform/log"
	"github.com/checkout-backend/checkout/internal/testutil"
	"github.com/checkout-backend/checkout/workers"
)

// TestPaymentWorker_ReservationRunOut_NotCharged: an order.placed that reaches the payment
// worker after the order's reservation ran out (a backlog, a broker outage), before the
// sweeper expired it, is not charged: the customer is never charged for stock that is
// about to go back on sale. The same event a worker reads in time is charged.
func TestPaymentWorker_ReservationRunOut_NotCharged(t *testing.T) {
	t.Parallel()
	s := testutil.NewStack(t, testutil.StackOptions{TTL: time.Minute, NoWorkers: true, NoRelay: true})
	s.Product(t, "RO", 100, map[string]int{"w": 2})
	ctx := context.Background()
	placed := func(id string) event.Envelope {
		t.Helper()
		var row struct {
			EventID string          `bun:"event_id"`
			Payload json.RawMessage `bun:"payload"`
		}
		if err := s.DB.NewRaw("SELECT event_id::text, payload FROM outbox WHERE type = ? AND aggregate_id = ?", event.OrderPlaced, id).Scan(ctx, &row.EventID, &row.Payload); err != nil {
			t.Fatal(err)
		}
		return event.Envelope{ID: row.EventID, Type: event.OrderPlaced, AggregateID: id, Payload: row.Payload}
	}
	logger := clog.New(io.Discard, 0)
	status := func(id string) checkout.Status {
		t.Helper()
		o, err := s.Orders.Order(ctx, id)
		if err != nil || o == nil {
			t.Fatalf("order %s: %v", id, err)
		}
		return o.Status
	}

	late := s.Checkout(t, "late", "k", "tok_visa", line("RO", 1))
	afterExpiry := func() time.Time { return time.Now().Add(2 * time.Minute) }
	w, err := workers.NewPaymentWorker(s.Payments, s.Sandbox, logger, afterExpiry)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.HandleOrderPlaced(ctx, placed(late)); err != nil {
		t.Fatal(err)
	}
	if n := s.Sandbox.ChargeCount(); n != 0 {
		t.Fatalf("%d charges for an order whose reservation had run out, want none", n)
	}
	if st := status(late); st != checkout.StatusPendingPayment {
		t.Fatalf("order %s after a late order.placed, want PENDING_PAYMENT (the sweeper expires it)", st)
	}

	inTime := s.Checkout(t, "in-time", "k", "tok_visa", line("RO", 1))
	w, err = workers.NewPaymentWorker(s.Payments, s.Sandbox, logger, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.HandleOrderPlaced(ctx, placed(inTime)); err != nil {
		t.Fatal(err)
	}
	if n := s.Sandbox.ChargeCount(); n != 1 {
		t.Fatalf("%d charges for an order read in time, want 1", n)
	}
	if st := status(inTime); st != checkout.StatusPaid {
		t.Fatalf("order read in time: %s, want PAID", st)
	}
}
