package feed

import (
	"context"
	"errors"
	"testing"

	"go.uber.org/goleak"

	"github.com/checkout-backend/checkout/internal/checkout"
)

func TestFeed_SlowSubscriberDroppedOthersServed(t *testing.T) {
	defer goleak.VerifyNone(t)
	f := New(nil, nil, 2, nil)
	ctx, cancel := context.WithCancel(context.Background())
	slow, slowReason, _ := f.Subscribe(ctx, "o1")
	fast, _, _ := f.Subscribe(ctx, "o1")
	got := 0
	for seq := 1; seq <= 5; seq++ {
		f.deliver(checkout.Order{ID: "o1", Sequence: seq})
		<-fast
		got++
	}
	if got != 5 {
		t.Fatalf("fast subscriber got %d", got)
	}
	n := 0
	for range slow {
		n++
	}
	if n != 2 || !errors.Is(slowReason(), ErrSlowSubscriber) {
		t.Fatalf("slow subscriber: %d buffered, reason %v", n, slowReason())
	}
	if f.Subscribers() != 1 {
		t.Fatalf("%d subscribers left, want 1", f.Subscribers())
	}
	cancel()
	for range fast {
	}
	if f.Subscribers() != 0 {
		t.Fatalf("%d subscribers after the client went away", f.Subscribers())
	}
}
