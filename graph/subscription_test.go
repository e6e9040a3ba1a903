package graph_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/checkout-backend/checkout/internal/checkout"
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

// follow subscribes and returns the statuses seen until complete or until status until.
func follow(ctx context.Context, t *testing.T, c *testutil.WSClient, orderID, until string) ([]string, error) {
	if err := c.Subscribe(ctx, "1", subscription, map[string]any{"id": orderID}); err != nil {
		return nil, err
	}
	var seen []string
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
		go func() {
			seen, err := follow(ctx, t, c, r.Checkout.Order.ID, tc.want)
			if err != nil {
				t.Error(err)
			}
			done <- seen
		}()
		time.Sleep(200 * time.Millisecond)
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
	seen, err := follow(ctx, t, bob, id, "")
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

func TestSubscription_200Subscribers_OneStalled(t *testing.T) {
	t.Parallel()
	gw := &gatedGateway{Gateway: sandbox.New(), gate: make(chan struct{})}
	s := testutil.NewStack(t, testutil.StackOptions{Gateway: gw})
	s.Product(t, "FAN", 100, map[string]int{"w": 10})
	inst := s.NewInstance(t)
	id := s.Checkout(t, "alice", "k", "tok_visa", checkout.Line{SKU: "FAN", Quantity: 1})
	partner := testutil.Token(t, "erp", "partner")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// The stalled reader subscribes and never reads again.
	stalled, _, err := testutil.DialWS(ctx, inst.URL, partner)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	stalled.Subscribe(ctx, "1", subscription, map[string]any{"id": id})

	const n = 200
	var wg sync.WaitGroup
	var mu sync.Mutex
	var got [][]string
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
			c.Subscribe(ctx, "1", subscription, map[string]any{"id": id})
			first, err := c.Next(ctx)
			ready.Done()
			if err != nil || first.Type != "next" {
				t.Error("no first message", err)
				return
			}
			seen := []string{"PENDING_PAYMENT"}
			for {
				m, err := c.Next(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				if m.Type == "complete" {
					break
				}
				var p statusMsg
				json.Unmarshal(m.Payload, &p)
				seen = append(seen, p.Data.OrderStatusChanged.Status)
				if p.Data.OrderStatusChanged.Status == "PAID" {
					break
				}
			}
			mu.Lock()
			got = append(got, seen)
			mu.Unlock()
		}()
	}
	ready.Wait()
	start := time.Now()
	close(gw.gate)
	wg.Wait()
	took := time.Since(start)
	if len(got) != n {
		t.Fatalf("%d of %d subscribers finished", len(got), n)
	}
	for _, seen := range got {
		if len(seen) != 2 || seen[1] != "PAID" {
			t.Fatalf("a subscriber saw %v", seen)
		}
	}
	t.Logf("200 subscribers got PAID %s after the payment was let through (one stalled reader)", took)
	stalled.Conn.Close(websocket.StatusNormalClosure, "bye")
	// Clients gone: no subscription is left behind on the instance.
	deadline := time.Now().Add(10 * time.Second)
	for inst.Feed.Subscribers() != 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := inst.Feed.Subscribers(); n != 0 {
		t.Fatalf("%d subscriptions left after every client went away", n)
	}
}
