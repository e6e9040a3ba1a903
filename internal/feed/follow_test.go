package feed_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/checkout-backend/checkout/internal/broker"
	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/event"
	"github.com/checkout-backend/checkout/internal/feed"
	"github.com/checkout-backend/checkout/internal/testutil"
)

// noOrders is a loader for a feed whose resync has nothing to read.
type noOrders struct{}

func (noOrders) Orders(context.Context, []string) (map[string]checkout.Order, error) {
	return map[string]checkout.Order{}, nil
}

// following runs a feed on b with one subscriber of orderID, and returns the context
// that bounds the test (30 s) and the subscriber's updates, once the feed follows.
func following(t *testing.T, b *broker.Broker, orderID string) (context.Context, <-chan checkout.Order) {
	t.Helper()
	f := feed.New(b, noOrders{}, 16, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	updates, _, _ := f.Subscribe(ctx, orderID)
	go func() { _ = f.Run(ctx) }()
	testutil.Eventually(t, 10*time.Second, "the feed following", f.Ready)
	return ctx, updates
}

// TestFeed_FollowsStatusChangesOnly_PlacedNeverDelivered: the status feed's queue on the
// real broker is bound to the status changes, not order.placed (a subscriber reads the
// order's current state when it subscribes, so order.placed is never news to it, and
// each instance saves a delivery per order). order.placed and order.paid of one order
// are published in that order on one channel, so the queue would hold them in that
// order: the subscriber's first update is PAID.
func TestFeed_FollowsStatusChangesOnly_PlacedNeverDelivered(t *testing.T) {
	b := testutil.NewBroker(t, testutil.AMQPURL(), testutil.NewTopology())
	ctx, updates := following(t, b, "o1")

	envelope := func(typ, status string, seq int) event.Envelope {
		p, _ := json.Marshal(event.OrderPayload{CustomerID: "c1", Order: event.OrderData{ID: "o1", Status: status, Sequence: seq}})
		return event.Envelope{ID: typ + "-1", Type: typ, AggregateID: "o1", OccurredAt: time.Now(), Payload: p}
	}
	if err := b.Publish(ctx, []event.Envelope{envelope(event.OrderPlaced, "PENDING_PAYMENT", 1), envelope(event.OrderPaid, "PAID", 2)}); err != nil {
		t.Fatal(err)
	}
	select {
	case o := <-updates:
		if o.Status != checkout.StatusPaid || o.Sequence != 2 {
			t.Fatalf("first update %s (sequence %d), want PAID: order.placed reached the status feed", o.Status, o.Sequence)
		}
	case <-ctx.Done():
		t.Fatal("no update reached the subscriber")
	}
}

// TestFeed_FollowsOtherRegionsOrdersToo: an order event another region's shovel
// delivers to this region's exchange of other regions' events reaches a subscriber
// here (one who follows an order of that region).
func TestFeed_FollowsOtherRegionsOrdersToo(t *testing.T) {
	topo := testutil.NewTopology()
	b := testutil.NewBroker(t, testutil.AMQPURL(), topo)
	ctx, updates := following(t, b, "o2")

	p, _ := json.Marshal(event.OrderPayload{CustomerID: "c1", Order: event.OrderData{ID: "o2", Status: "PAID", Sequence: 2}})
	body, _ := json.Marshal(event.Envelope{ID: "remote-1", Type: event.OrderPaid, AggregateID: "o2", OccurredAt: time.Now(), Payload: p})
	if err := testutil.AMQPChannel(t).PublishWithContext(ctx, topo.RemoteExchange(), event.OrderPaid, false, false,
		amqp.Publishing{MessageId: "remote-1", Type: event.OrderPaid, ContentType: "application/json", Body: body}); err != nil {
		t.Fatal(err)
	}
	select {
	case o := <-updates:
		if o.Status != checkout.StatusPaid {
			t.Fatalf("update %s, want PAID", o.Status)
		}
	case <-ctx.Done():
		t.Fatal("another region's order event never reached the subscriber")
	}
}
