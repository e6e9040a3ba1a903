package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/checkout-backend/checkout/internal/event"
	"github.com/checkout-backend/checkout/internal/store"
	"github.com/checkout-backend/checkout/internal/testutil"
	"github.com/checkout-backend/checkout/internal/webhook"
)

// TestWebhooks_SuccessRecordedWhileTheFanOutHoldsTheEndpoint: a successful delivery is
// recorded while another transaction holds the endpoint's row FOR SHARE, as the fan-out
// does while it adds tasks. Deliveries to one partner used to lock its row FOR UPDATE,
// one after another, and the fan-out of every later event waited behind them (make
// chaos: the partner's events drained long after the orders were final). A failed
// delivery still locks it: the failure count and the disabling are decided there.
func TestWebhooks_SuccessRecordedWhileTheFanOutHoldsTheEndpoint(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testutil.NewDB(t)
	s := store.NewWebhooks(db.DB, time.Now)
	h, err := s.Register(ctx, uuid.NewString(), "https://partner.example/hooks", []string{"*"}, "secret")
	if err != nil {
		t.Fatal(err)
	}
	orderID := uuid.NewString()
	for i, typ := range []string{event.OrderPlaced, event.OrderPaid} {
		env, err := event.New(typ, orderID, time.Now(), map[string]int{"n": i})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.FanOut(ctx, "webhook-fanout", env, []byte(`{}`), orderID, i+1); err != nil {
			t.Fatal(err)
		}
	}
	tasks, err := s.ClaimDue(ctx, time.Now().Add(time.Second), 10, time.Minute)
	if err != nil || len(tasks) != 1 {
		t.Fatalf("claimed %d tasks (%v), want the chain's head", len(tasks), err)
	}
	policy := store.DeliveryPolicy{Retry: webhook.Retry{Base: time.Minute, MaxAge: time.Hour}, DisableAfter: 1000}

	fanOut, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer fanOut.Rollback()
	if _, err := fanOut.ExecContext(ctx, "SELECT id FROM webhooks WHERE id = ? FOR SHARE", h.ID); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	out, _, err := s.RecordAttempt(rctx, &tasks[0], store.Attempt{StatusCode: 204, At: time.Now()}, policy)
	if err != nil || out != store.Delivered {
		t.Fatalf("recording a success while the fan-out holds the endpoint: %v, %v (it waited on the endpoint's row)", out, err)
	}
	// The chain goes on: the next task is due.
	next, err := s.ClaimDue(ctx, time.Now().Add(time.Second), 10, time.Minute)
	if err != nil || len(next) != 1 || next[0].EventType != event.OrderPaid {
		t.Fatalf("after the head was delivered: %d tasks claimed (%v), want order.paid", len(next), err)
	}
}
