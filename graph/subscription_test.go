package graph_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/checkout-backend/checkout/graph/gqlhttp"
	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/event"
	"github.com/checkout-backend/checkout/internal/payment"
	"github.com/checkout-backend/checkout/internal/payment/sandbox"
	"github.com/checkout-backend/checkout/internal/testutil"
)

// gatedGateway holds every charge until the gate opens.
type gatedGateway struct {
	payment.Gateway
	gate chan struct{}
}

func (g *gatedGateway) Charge(ctx context.Context, r payment.ChargeRequest) (payment.Charge, error) {
	<-g.gate
	return g.Gateway.Charge(ctx, r)
}

const subscription = `subscription($id: ID!) { orderStatusChanged(orderId: $id) { id status items { sku } paymentFailureReason } }`

type statusMsg struct {
	Data struct {
		OrderStatusChanged struct {
			ID     string `json:"id"`
			Status string `json:"status"`
		} `json:"orderStatusChanged"`
	} `json:"data"`
	Errors []struct {
		Message    string         `json:"message"`
		Extensions map[string]any `json:"extensions"`
	} `json:"errors"`
}

// follow subscribes and returns the statuses seen until complete or until status until;
// first, when not nil, is closed once the first status arrived.
func follow(ctx context.Context, c *testutil.WSClient, orderID, until string, first chan<- struct{}) ([]string, error) {
	if err := c.Subscribe(ctx, "1", subscription, map[string]any{"id": orderID}); err != nil {
		return nil, err
	}
	var seen []string
	defer func() {
		if first != nil && len(seen) == 0 {
			close(first)
		}
	}()
	for {
		m, err := c.Next(ctx)
		if err != nil {
			return seen, err
		}
		switch m.Type {
		case "next":
			var p statusMsg
			json.Unmarshal(m.Payload, &p)
			if len(p.Errors) > 0 {
				return seen, &subErr{p.Errors[0].Message}
			}
			seen = append(seen, p.Data.OrderStatusChanged.Status)
			if len(seen) == 1 && first != nil {
				close(first)
			}
			if p.Data.OrderStatusChanged.Status == until {
				return seen, nil
			}
		case "error":
			return seen, &subErr{string(m.Payload)}
		case "complete":
			return seen, nil
		}
	}
}

type subErr struct{ msg string }

func (e *subErr) Error() string { return e.msg }

func TestSubscription_OtherInstance_SeesEveryChange(t *testing.T) {
	t.Parallel()
	testutil.Slow(t)
	gw := &gatedGateway{Gateway: sandbox.New(), gate: make(chan struct{})}
	s := testutil.NewStack(t, testutil.StackOptions{Gateway: gw})
	s.Product(t, "SUB", 100, map[string]int{"w": 10})
	takesCheckout, delivers := s.NewInstance(t), s.NewInstance(t)
	alice := testutil.Token(t, "alice")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	for _, tc := range []struct{ token, want string }{{"tok_visa", "PAID"}, {"tok_chargeDeclined", "PAYMENT_FAILED"}} {
		data, err := takesCheckout.Post(t, alice, `mutation($in: CheckoutInput!) { checkout(input: $in) { order { id } } }`,
			map[string]any{"in": map[string]any{"idempotencyKey": tc.token, "paymentToken": tc.token, "items": []any{map[string]any{"sku": "SUB", "quantity": 1}}}})
		if err != nil {
			t.Fatal(err)
		}
		var r struct {
			Checkout struct{ Order struct{ ID string } }
		}
		json.Unmarshal(data, &r)
		c, _, err := testutil.DialWS(ctx, delivers.URL, alice)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan []string)
		subscribed := make(chan struct{})
		go func() {
			seen, err := follow(ctx, c, r.Checkout.Order.ID, tc.want, subscribed)
			if err != nil {
				t.Error(err)
			}
			done <- seen
		}()
		<-subscribed          // the subscription has the order's current state
		gw.gate <- struct{}{} // let this order's charge through
		seen := <-done
		if len(seen) != 2 || seen[0] != "PENDING_PAYMENT" || seen[1] != tc.want {
			t.Fatalf("%s: saw %v, want [PENDING_PAYMENT %s]", tc.token, seen, tc.want)
		}
		if tc.want == "PAYMENT_FAILED" {
			// A final state ends the subscription cleanly.
			if m, err := c.Next(ctx); err != nil || m.Type != "complete" {
				t.Fatalf("after a final state: %+v %v, want complete", m, err)
			}
		}
		c.Close()
	}
}

func TestSubscription_Auth(t *testing.T) {
	t.Parallel()
	s := testutil.NewStack(t, testutil.StackOptions{NoWorkers: true})
	s.Product(t, "SA", 100, map[string]int{"w": 10})
	inst := s.NewInstance(t)
	id := s.Checkout(t, "alice", "k", "tok_visa", checkout.Line{SKU: "SA", Quantity: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if _, code, err := testutil.DialWS(ctx, inst.URL, ""); err == nil || code != 4401 {
		t.Fatalf("no token: close %d (%v), want 4401", code, err)
	}
	if _, code, err := testutil.DialWS(ctx, inst.URL, "garbage.token.here"); err == nil || code != 4403 {
		t.Fatalf("bad token: close %d (%v), want 4403", code, err)
	}
	bob, _, err := testutil.DialWS(ctx, inst.URL, testutil.Token(t, "bob"))
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	seen, err := follow(ctx, bob, id, "", nil)
	if err == nil || len(seen) != 0 {
		t.Fatalf("bob followed alice's order: %v %v", seen, err)
	}
	partner, _, err := testutil.DialWS(ctx, inst.URL, testutil.Token(t, "erp", "partner"))
	if err != nil {
		t.Fatal(err)
	}
	defer partner.Close()
	partner.Subscribe(ctx, "1", subscription, map[string]any{"id": id})
	m, err := partner.Next(ctx)
	if err != nil || m.Type != "next" {
		t.Fatalf("partner: %+v %v", m, err)
	}
}

// publishUpdate sends update seq of order o through the stack's broker, as the relay
// would: status PAID with tracking number T-<seq>, or SHIPPED (a final status, which ends
// the subscriptions) when final.
func publishUpdate(t *testing.T, s *testutil.Stack, o checkout.Order, seq int, final bool) {
	t.Helper()
	typ, status, tracking := event.OrderPaid, checkout.StatusPaid, fmt.Sprintf("T-%04d", seq)
	if final {
		typ, status = event.OrderShipped, checkout.StatusShipped
	}
	env, err := event.New(typ, o.ID, time.Now(), event.OrderPayload{CustomerID: o.CustomerID, Order: event.OrderData{
		ID: o.ID, Status: string(status), Sequence: seq, TotalCents: o.TotalCents, Currency: o.Currency,
		UpdatedAt: time.Now(), TrackingNumber: &tracking}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Broker.Publish(context.Background(), []event.Envelope{env}); err != nil {
		t.Fatal(err)
	}
}

const fanSubscription = `subscription($id: ID!) { orderStatusChanged(orderId: $id) { id status trackingNumber items { sku quantity unitPriceCents } } }`

type fanMsg struct {
	Data struct {
		OrderStatusChanged struct {
			Status         string  `json:"status"`
			TrackingNumber *string `json:"trackingNumber"`
		} `json:"orderStatusChanged"`
	} `json:"data"`
}

// readUpdates reads a subscription's "next" messages until it ends, and returns the
// tracking numbers seen (the status when there is none) and the message that ended it;
// onUpdate, when not nil, is told each one.
func readUpdates(ctx context.Context, c *testutil.WSClient, onUpdate func(string)) ([]string, testutil.WSMessage, error) {
	var seen []string
	for {
		m, err := c.Next(ctx)
		if err != nil || m.Type != "next" {
			return seen, m, err
		}
		var p fanMsg
		if err := json.Unmarshal(m.Payload, &p); err != nil {
			return seen, m, err
		}
		if tn := p.Data.OrderStatusChanged.TrackingNumber; tn != nil && p.Data.OrderStatusChanged.Status == "PAID" {
			seen = append(seen, *tn)
		} else {
			seen = append(seen, p.Data.OrderStatusChanged.Status)
		}
		if onUpdate != nil {
			onUpdate(seen[len(seen)-1])
		}
	}
}

// A subscriber that stops reading must not hold up the others. The instance's sockets
// have small buffers and the stalled client never reads after its first message, so the
// updates back up through the socket, the server's writer and the feed's buffer until
// the feed drops it; the other 199 get every update meanwhile. Updates go out one at a
// time, each once the 199 readers have the one before: a reader that keeps up is never
// behind by more than one, the stalled one falls one further behind each round.
func TestSubscription_200Subscribers_OneStalled(t *testing.T) {
	t.Parallel()
	testutil.Slow(t)
	s := testutil.NewStack(t, testutil.StackOptions{NoWorkers: true})
	// Twenty lines: every update is a frame of about a kilobyte.
	var lines []checkout.Line
	for i := 1; i <= 20; i++ {
		sku := fmt.Sprintf("FAN-%02d", i)
		s.Product(t, sku, 100, map[string]int{"w": 10})
		lines = append(lines, checkout.Line{SKU: sku, Quantity: 1})
	}
	const sockBuf = 4096 // the kernel doubles it: about 10 KB in flight on a stalled socket
	// The server's write to the stalled socket (the SLOW_SUBSCRIBER error) waits until
	// the client reads at the end: the write deadline and the ping deadline are longer
	// than the test, otherwise, on a loaded machine, the server closes the socket first
	// (correctly) and the client reads EOF instead of the error.
	inst := s.NewInstance(t, testutil.InstanceOptions{SendBuffer: sockBuf,
		Sockets: gqlhttp.SocketOptions{WriteTimeout: 2 * time.Minute, PingInterval: 2 * time.Minute}})
	id := s.Checkout(t, "alice", "k", "tok_visa", lines...)
	order, err := s.Orders.Order(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	partner := testutil.Token(t, "erp", "partner")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	vars := map[string]any{"id": id}

	// The stalled reader subscribes, takes the first message and never reads again.
	stalled, _, err := testutil.DialWSWith(ctx, inst.URL, partner, testutil.WSOptions{ReceiveBuffer: sockBuf})
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	if err := stalled.Subscribe(ctx, "1", fanSubscription, vars); err != nil {
		t.Fatal(err)
	}
	if m, err := stalled.Next(ctx); err != nil || m.Type != "next" {
		t.Fatalf("stalled subscriber's first message: %+v %v", m, err)
	}

	const n, updates = 199, 64
	// received[i] counts the readers that have update i+2; the last of them signals round.
	var received [updates]atomic.Int32
	round := make(chan int, 1)
	onUpdate := func(u string) {
		var seq int
		if _, err := fmt.Sscanf(u, "T-%04d", &seq); err == nil && seq >= 2 && seq <= updates+1 {
			if received[seq-2].Add(1) == n {
				round <- seq
			}
		}
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var got [][]string
	var ends []string
	var ready sync.WaitGroup
	ready.Add(n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, _, err := testutil.DialWS(ctx, inst.URL, partner)
			if err != nil {
				ready.Done()
				t.Error(err)
				return
			}
			defer c.Close()
			c.Subscribe(ctx, "1", fanSubscription, vars)
			first, err := c.Next(ctx)
			ready.Done()
			if err != nil || first.Type != "next" {
				t.Error("no first message", err)
				return
			}
			seen, end, err := readUpdates(ctx, c, onUpdate)
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			got = append(got, seen)
			ends = append(ends, end.Type)
			mu.Unlock()
		}()
	}
	ready.Wait()
	start := time.Now()
	for seq := 2; seq <= updates+1; seq++ {
		publishUpdate(t, s, *order, seq, false)
		select {
		case <-round:
		case <-ctx.Done():
			t.Fatalf("update %d reached %d of %d readers that keep up", seq, received[seq-2].Load(), n)
		}
	}
	publishUpdate(t, s, *order, updates+2, true)
	wg.Wait()
	took := time.Since(start)

	// Every other subscriber got every update, in order, and a clean end.
	var want []string
	for seq := 2; seq <= updates+1; seq++ {
		want = append(want, fmt.Sprintf("T-%04d", seq))
	}
	want = append(want, "SHIPPED")
	if len(got) != n {
		t.Fatalf("%d of %d subscribers finished", len(got), n)
	}
	for i, seen := range got {
		if !slices.Equal(seen, want) || ends[i] != "complete" {
			t.Fatalf("a subscriber saw %d updates %v... ending with %q; want all %d in order, then complete", len(seen), seen[:min(len(seen), 3)], ends[i], len(want))
		}
	}
	t.Logf("%d subscribers got %d updates each in %s while one reader stalled", n, len(want), took)
	// The stalled subscriber is gone from the feed although its client never read again.
	testutil.Eventually(t, 10*time.Second, "the stalled subscriber dropped", func() bool { return inst.Feed.Subscribers() == 0 })

	// Reading now, the stalled client finds what the buffers held, a gap-free start of the
	// updates, then the SLOW_SUBSCRIBER error.
	seen, end, err := readUpdates(ctx, stalled, nil)
	if err != nil {
		t.Fatalf("stalled subscriber, after %d updates: %v", len(seen), err)
	}
	if len(seen) >= len(want) || !slices.Equal(seen, want[:len(seen)]) {
		t.Fatalf("stalled subscriber got %d of %d updates (%v...): it never fell behind, or got them out of order", len(seen), len(want), seen[:min(len(seen), 3)])
	}
	var errs []struct {
		Extensions map[string]any `json:"extensions"`
	}
	json.Unmarshal(end.Payload, &errs)
	if end.Type != "error" || len(errs) != 1 || errs[0].Extensions["code"] != "SLOW_SUBSCRIBER" {
		t.Fatalf("stalled subscriber ended with %s %s, want an error with code SLOW_SUBSCRIBER", end.Type, end.Payload)
	}
	t.Logf("the stalled subscriber had %d of %d updates buffered when it was dropped", len(seen), len(want))
}
