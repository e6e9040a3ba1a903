package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
)

// fakeStripe speaks enough of Stripe's API for the payment worker (form-encoded
// PaymentIntents, Idempotency-Key) and counts, per order, the distinct charges asked
// for: two idempotency keys for one order would be a double charge.
type fakeStripe struct {
	srv *httptest.Server

	mu      sync.Mutex
	charges map[string]map[string]string // order id -> idempotency key -> payment intent
	n       int
}

func newFakeStripe() *fakeStripe {
	f := &fakeStripe{charges: map[string]map[string]string{}}
	f.srv = httptest.NewServer(f)
	return f
}

// ServeHTTP answers a PaymentIntent (one per idempotency key) or a refund.
func (f *fakeStripe) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r.ParseForm()
	w.Header().Set("Content-Type", "application/json")
	key := r.Header.Get("Idempotency-Key")
	switch r.URL.Path {
	case "/v1/payment_intents":
		order := r.PostForm.Get("metadata[order_id]")
		amount, _ := strconv.ParseInt(r.PostForm.Get("amount"), 10, 64)
		f.mu.Lock()
		if f.charges[order] == nil {
			f.charges[order] = map[string]string{}
		}
		id, ok := f.charges[order][key]
		if !ok {
			f.n++
			id = fmt.Sprintf("pi_chaos_%d", f.n)
			f.charges[order][key] = id
		}
		f.mu.Unlock()
		json.NewEncoder(w).Encode(map[string]any{"id": id, "object": "payment_intent", "amount": amount,
			"currency": r.PostForm.Get("currency"), "status": "succeeded", "metadata": map[string]string{"order_id": order}})
	case "/v1/refunds":
		json.NewEncoder(w).Encode(map[string]any{"id": "re_chaos", "object": "refund", "status": "succeeded"})
	default:
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"error":{"type":"invalid_request_error","message":"unknown path"}}`)
	}
}

// chargesOf is the number of distinct charges asked for the order.
func (f *fakeStripe) chargesOf(order string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.charges[order])
}
