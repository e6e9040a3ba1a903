package testutil

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"
)

// FakeStripe speaks enough of Stripe's wire format (form-encoded requests, JSON
// PaymentIntents and errors, Idempotency-Key) for the saga: it charges once per
// idempotency key, and can be told to answer 5xx or to hang.
type FakeStripe struct {
	URL string

	mu       sync.Mutex
	mode     string // "ok", "5xx", "hang"
	requests int
	charges  map[string]string // idempotency key -> payment intent id
	refunds  int
}

// NewFakeStripe starts the server; it stops at cleanup.
func NewFakeStripe(t testing.TB) *FakeStripe {
	f := &FakeStripe{mode: "ok", charges: map[string]string{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	f.URL = srv.URL
	return f
}

// SetMode switches the answers: "ok", "5xx" or "hang".
func (f *FakeStripe) SetMode(m string) {
	f.mu.Lock()
	f.mode = m
	f.mu.Unlock()
}

// Charges is the number of distinct charges (idempotency keys) made.
func (f *FakeStripe) Charges() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.charges)
}

// Requests is the number of requests that reached the server.
func (f *FakeStripe) Requests() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests
}

func (f *FakeStripe) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r.ParseForm()
	f.mu.Lock()
	f.requests++
	mode := f.mode
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	switch mode {
	case "hang":
		select {
		case <-r.Context().Done():
		case <-time.After(30 * time.Second):
		}
		return
	case "5xx":
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, `{"error":{"type":"api_error","message":"Stripe is down (fake)"}}`)
		return
	}
	key := r.Header.Get("Idempotency-Key")
	switch r.URL.Path {
	case "/v1/payment_intents":
		amount, _ := strconv.ParseInt(r.PostForm.Get("amount"), 10, 64)
		f.mu.Lock()
		id, ok := f.charges[key]
		if !ok {
			id = fmt.Sprintf("pi_fake_%d", len(f.charges)+1)
			f.charges[key] = id
		}
		f.mu.Unlock()
		json.NewEncoder(w).Encode(map[string]any{"id": id, "object": "payment_intent", "amount": amount,
			"currency": r.PostForm.Get("currency"), "status": "succeeded",
			"metadata": map[string]string{"order_id": r.PostForm.Get("metadata[order_id]")}})
	case "/v1/refunds":
		f.mu.Lock()
		f.refunds++
		n := f.refunds
		f.mu.Unlock()
		json.NewEncoder(w).Encode(map[string]any{"id": fmt.Sprintf("re_fake_%d", n), "object": "refund", "status": "succeeded"})
	default:
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"error":{"type":"invalid_request_error","message":"unknown path"}}`)
	}
}
