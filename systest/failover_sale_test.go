package systest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/store"
	"github.com/checkout-backend/checkout/internal/testutil"
)

// answer is what a client was told about one idempotency key, in the end.
type answer struct {
	key, customer, sku string
	orderID            string    // the acknowledged order, "" when out of stock
	code               string    // a userError code (OUT_OF_STOCK), "" when acknowledged
	at                 time.Time // when the final answer came
	failures           int       // attempts before it that got no answer (an error)
}

// shop is a sale in progress: clients checking out through the GraphQL API, each retrying
// a request that got no answer with the same idempotency key, as the contract says.
type shop struct {
	t   *testing.T
	api http.Handler

	mu       sync.Mutex
	answers  []answer
	failures []time.Time   // attempts that got an error instead of an answer
	gate     chan struct{} // closed while clients may take new keys
	busy     int           // clients with a key in hand
	idle     *sync.Cond    // signalled when busy drops
	wg       sync.WaitGroup
	stop     chan struct{}
	ctx      context.Context // requests; cancelled when the test ends early
	cancel   context.CancelFunc
}

// open starts clients of the stack's database behind an API of its own, with its own
// pool as serve gives the API (relay and workers cannot take its connections): each
// client buys one unit per checkout, of skus in turn.
func open(t *testing.T, s *testutil.Stack, clients int, skus ...string) *shop {
	pool, err := store.Open(context.Background(), s.DB.URL, store.Options{MaxOpenConns: clients + 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pool.Close() })
	api := testutil.NewAPI(t, &testutil.DB{DB: pool, Schema: s.DB.Schema, URL: s.DB.URL})
	sh := &shop{t: t, api: api.Handler, stop: make(chan struct{}), gate: make(chan struct{})}
	close(sh.gate)
	sh.idle = sync.NewCond(&sh.mu)
	sh.ctx, sh.cancel = context.WithCancel(context.Background())
	for c := range clients {
		customer := fmt.Sprintf("customer-%d", c)
		token := testutil.Token(t, customer)
		sh.wg.Add(1)
		go func() {
			defer sh.wg.Done()
			sh.client(customer, token, skus)
		}()
	}
	t.Cleanup(func() {
		sh.cancel() // a test that failed half-way leaves requests hanging on a dead node
		sh.close()
	})
	return sh
}

func (sh *shop) client(customer, token string, skus []string) {
	for i := 0; ; i++ {
		sh.mu.Lock()
		gate := sh.gate
		sh.mu.Unlock()
		select {
		case <-sh.stop:
			return
		case <-gate:
		}
		select {
		case <-sh.stop:
			return
		default:
		}
		sh.mu.Lock()
		sh.busy++
		sh.mu.Unlock()
		a, ok := sh.buy(customer, token, fmt.Sprintf("%s-%d", customer, i), skus[i%len(skus)])
		sh.mu.Lock()
		if ok {
			sh.answers = append(sh.answers, a)
		}
		sh.busy--
		sh.idle.Broadcast()
		sh.mu.Unlock()
		if !ok {
			return
		}
	}
}

// buy checks out key until it gets an answer, retrying with the same key.
func (sh *shop) buy(customer, token, key, sku string) (answer, bool) {
	deadline := time.Now().Add(90 * time.Second)
	a := answer{key: key, customer: customer, sku: sku}
	for {
		id, code, err := sh.checkout(token, a.key, a.sku)
		if err == nil {
			a.orderID, a.code, a.at = id, code, time.Now()
			break
		}
		sh.mu.Lock()
		sh.failures = append(sh.failures, time.Now())
		sh.mu.Unlock()
		a.failures++
		if sh.ctx.Err() != nil {
			return a, false
		}
		if time.Now().After(deadline) {
			sh.t.Errorf("checkout %s never got an answer: %v", a.key, err)
			return a, false
		}
		time.Sleep(25 * time.Millisecond)
	}
	return a, true
}

// pause lets the clients finish the checkout in hand and take no new one.
func (sh *shop) pause() {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.gate = make(chan struct{})
	for sh.busy > 0 {
		sh.idle.Wait()
	}
}

// resume lets paused clients go on.
func (sh *shop) resume() {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	close(sh.gate)
}

// record adds an answer got outside the clients.
func (sh *shop) record(a answer) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.answers = append(sh.answers, a)
}

// checkout posts the mutation; an error means no answer (the client will retry).
func (sh *shop) checkout(token, key, sku string) (orderID, code string, err error) {
	body, _ := json.Marshal(map[string]any{"query": checkoutMutation, "variables": map[string]any{"in": map[string]any{
		"idempotencyKey": key, "paymentToken": "tok_visa", "items": []any{map[string]any{"sku": sku, "quantity": 1}}}}})
	ctx, cancel := context.WithTimeout(sh.ctx, 20*time.Second)
	defer cancel()
	req := httptest.NewRequest(http.MethodPost, "/graphql", bytes.NewReader(body)).WithContext(ctx)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	rec := httptest.NewRecorder()
	sh.api.ServeHTTP(rec, req)
	var r struct {
		Data struct {
			Checkout *struct {
				Order      *struct{ ID string }
				UserErrors []struct{ Code string }
			}
		}
		Errors []struct {
			Message    string
			Extensions map[string]any
		}
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
		return "", "", fmt.Errorf("status %d: %s", rec.Code, rec.Body.String())
	}
	switch c := r.Data.Checkout; {
	case len(r.Errors) > 0 || c == nil:
		return "", "", fmt.Errorf("status %d: %+v", rec.Code, r.Errors)
	case c.Order != nil:
		return c.Order.ID, "", nil
	case len(c.UserErrors) > 0:
		if c.UserErrors[0].Code != string(checkout.OutOfStock) {
			sh.t.Errorf("checkout %s: unexpected user error %s", key, c.UserErrors[0].Code)
		}
		return "", c.UserErrors[0].Code, nil
	}
	return "", "", fmt.Errorf("empty answer: %s", rec.Body.String())
}

// close stops the clients once each has an answer for the request in hand.
func (sh *shop) close() {
	select {
	case <-sh.stop:
	default:
		close(sh.stop)
	}
	sh.wg.Wait()
}

// acknowledged counts the orders acknowledged after since.
func (sh *shop) acknowledged(since time.Time) int {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	n := 0
	for _, a := range sh.answers {
		if a.orderID != "" && a.at.After(since) {
			n++
		}
	}
	return n
}

// results returns every final answer and the times of failed attempts.
func (sh *shop) results() ([]answer, []time.Time) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return append([]answer(nil), sh.answers...), append([]time.Time(nil), sh.failures...)
}

// waitAcknowledged waits until n orders were acknowledged after since.
func (sh *shop) waitAcknowledged(n int, since time.Time, within time.Duration) {
	sh.t.Helper()
	testutil.Eventually(sh.t, within, fmt.Sprintf("%d checkouts acknowledged", n), func() bool { return sh.acknowledged(since) >= n })
}

// firstAfter is the first acknowledgement after t.
func firstAfter(answers []answer, t time.Time) time.Time {
	var first time.Time
	for _, a := range answers {
		if a.orderID != "" && a.at.After(t) && (first.IsZero() || a.at.Before(first)) {
			first = a.at
		}
	}
	return first
}

// count runs a count query on the stack's pool, retrying errors for a while: after a
// failover the pool still holds connections to the dead node, each failing once.
func count(t *testing.T, s *testutil.Stack, query string, args ...any) int {
	t.Helper()
	var n int
	var err error
	for range 50 {
		if err = s.DB.NewRaw(query, args...).Scan(context.Background(), &n); err == nil {
			return n
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: %v", query, err)
	return 0
}

// waitPaid waits until the order is PAID, through connection errors (see count).
func waitPaid(t *testing.T, s *testutil.Stack, id string, within time.Duration) {
	t.Helper()
	testutil.Eventually(t, within, "order "+id+" PAID", func() bool {
		o, err := s.Orders.Order(context.Background(), id)
		return err == nil && o != nil && o.Status == checkout.StatusPaid
	})
}

// undelivered counts the outbox rows not published, and the order.placed events the
// payment worker has not recorded. A retry's row (destination set: one consumer's
// redelivery, scheduled when handling failed, at a kill for instance) has an id of its
// own and carries the event's id in a header, which is the id the inbox records: so only
// an event's own row is looked up in the inbox, and a retry's counts while unpublished.
const undelivered = `SELECT count(*) FROM outbox o WHERE o.published_at IS NULL
	OR (o.type = 'order.placed' AND o.destination IS NULL
	    AND NOT EXISTS (SELECT 1 FROM inbox i WHERE i.consumer = 'payment' AND i.event_id = o.event_id::text))`

// checkSaleSettles waits until every acknowledged order is PAID and checks the saga's
// invariants: one charge per order, every order.placed event consumed by the payment
// worker, nothing left in the outbox, no SKU sold beyond its stock.
func checkSaleSettles(t *testing.T, s *testutil.Stack, answers []answer, stock map[string]int) {
	t.Helper()
	ids := map[string]bool{}
	sold := map[string]int{}
	for _, a := range answers {
		if a.orderID == "" {
			continue
		}
		if ids[a.orderID] {
			t.Errorf("order %s acknowledged for two keys", a.orderID)
		}
		ids[a.orderID] = true
		sold[a.sku]++
	}
	for id := range ids {
		waitPaid(t, s, id, 60*time.Second)
	}
	if n := count(t, s, "SELECT count(*) FROM orders"); n != len(ids) {
		t.Errorf("%d orders in the database, %d acknowledged: every order is acknowledged once", n, len(ids))
	}
	if got := s.Sandbox.ChargeCount(); got != len(ids) {
		t.Errorf("%d charges for %d orders, want one each", got, len(ids))
	}
	if n := count(t, s, "SELECT count(*) FROM payments WHERE status = 'succeeded'"); n != len(ids) {
		t.Errorf("%d succeeded payments for %d orders", n, len(ids))
	}
	testutil.Eventually(t, 30*time.Second, "every order.placed consumed by the payment worker and the outbox drained", func() bool {
		return count(t, s, undelivered) == 0
	})
	for sku, initial := range stock {
		onHand := count(t, s, "SELECT COALESCE(sum(on_hand), 0)::int FROM inventory_levels WHERE sku = ?", sku)
		reserved := count(t, s, "SELECT COALESCE(sum(reserved), 0)::int FROM inventory_levels WHERE sku = ?", sku)
		if sold[sku] > initial || onHand != initial-sold[sku] || reserved != 0 {
			t.Errorf("%s: %d acknowledged of %d in stock, on hand %d reserved %d (want %d/0)", sku, sold[sku], initial, onHand, reserved, initial-sold[sku])
		}
	}
}
