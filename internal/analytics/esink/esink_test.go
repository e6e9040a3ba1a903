package esink_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/checkout-backend/checkout/internal/analytics"
	"github.com/checkout-backend/checkout/internal/analytics/esink"
)

// bulkServer answers POST /_bulk as Elasticsearch 8 does (product header, items in
// request order); status(n, i) is the status of item i of the n-th request (1-based).
type bulkServer struct {
	t      *testing.T
	mu     sync.Mutex
	bodies []string
	ctypes []string
	status func(n, i int) int
}

func (b *bulkServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Elastic-Product", "Elasticsearch")
	w.Header().Set("Content-Type", "application/json")
	if r.Method != http.MethodPost || r.URL.Path != "/_bulk" {
		w.WriteHeader(404)
		fmt.Fprintf(w, `{"error":"unexpected %s %s"}`, r.Method, r.URL.Path)
		return
	}
	body, _ := io.ReadAll(r.Body)
	b.mu.Lock()
	b.bodies = append(b.bodies, string(body))
	b.ctypes = append(b.ctypes, r.Header.Get("Content-Type"))
	n := len(b.bodies)
	b.mu.Unlock()
	type res struct {
		Index  string         `json:"_index"`
		ID     string         `json:"_id"`
		Status int            `json:"status"`
		Error  map[string]any `json:"error,omitempty"`
	}
	var items []map[string]res
	errs := false
	sc := bufio.NewScanner(bytes.NewReader(body))
	for i := 0; sc.Scan(); i++ {
		var action map[string]map[string]string
		if err := json.Unmarshal(sc.Bytes(), &action); err != nil || action["index"] == nil {
			b.t.Errorf("request %d: line %q is not an index action", n, sc.Text())
			return
		}
		if !sc.Scan() || !json.Valid(sc.Bytes()) {
			b.t.Errorf("request %d: action without a JSON document", n)
			return
		}
		st := b.status(n, len(items))
		r := res{Index: action["index"]["_index"], ID: action["index"]["_id"], Status: st}
		switch st {
		case 429:
			r.Error = map[string]any{"type": "es_rejected_execution_exception", "reason": "rejected execution"}
		case 503:
			r.Error = map[string]any{"type": "unavailable_shards_exception", "reason": "primary shard is not active"}
		case 400:
			r.Error = map[string]any{"type": "mapper_parsing_exception", "reason": "failed to parse field [total_cents]"}
		}
		errs = errs || st >= 300
		items = append(items, map[string]res{"index": r})
	}
	json.NewEncoder(w).Encode(map[string]any{"took": 3, "errors": errs, "items": items})
}

func (b *bulkServer) requests() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.bodies...)
}

func newSink(t *testing.T, status func(n, i int) int) (*esink.Sink, *bulkServer) {
	t.Helper()
	bs := &bulkServer{t: t, status: status}
	srv := httptest.NewServer(bs)
	t.Cleanup(srv.Close)
	es, err := esink.Transport([]string{srv.URL}, "", false)
	if err != nil {
		t.Fatal(err)
	}
	s, err := esink.New(es, esink.Options{IndexPrefix: "shop", Backoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return s, bs
}

var at = time.Date(2026, 11, 27, 13, 5, 7, 123456000, time.UTC)

func batch() analytics.Batch {
	return analytics.Batch{
		Orders:        []analytics.Order{{EventID: "e1", OrderID: "o1", CustomerID: "c1", PlacedAt: at, TotalCents: 3998, Currency: "USD", Lines: 1, Units: 2}},
		OrderLines:    []analytics.OrderLine{{EventID: "e1", OrderID: "o1", LineNo: 1, SKU: "FLASH", Quantity: 2, UnitPriceCents: 1999, Currency: "USD", PlacedAt: at}},
		StatusChanges: []analytics.StatusChange{{EventID: "e1", OrderID: "o1", Status: "PENDING_PAYMENT", Sequence: 1, OccurredAt: at}},
		Payments:      []analytics.Payment{{EventID: "e2", OrderID: "o1", Outcome: "failed", Reason: "card_declined", AmountCents: 3998, Currency: "USD", OccurredAt: at.Add(time.Second)}},
	}
}

// TestBulk_WireFormat: the request is the bulk NDJSON Elasticsearch documents (hand
// checked against its bulk API reference): an index action with _index and _id, then
// the document, each on its own line, the body ending with a newline.
func TestBulk_WireFormat(t *testing.T) {
	t.Parallel()
	s, bs := newSink(t, func(n, i int) int { return 201 })
	if err := s.Write(context.Background(), batch()); err != nil {
		t.Fatal(err)
	}
	reqs := bs.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	want := `{"index":{"_id":"e1","_index":"shop-orders-2026.11.27"}}
{"event_id":"e1","order_id":"o1","customer_id":"c1","cart_id":"","placed_at":"2026-11-27T13:05:07.123456Z","total_cents":3998,"currency":"USD","lines":1,"units":2}
{"index":{"_id":"e1-1","_index":"shop-order-lines-2026.11.27"}}
{"event_id":"e1","order_id":"o1","line_no":1,"sku":"FLASH","quantity":2,"unit_price_cents":1999,"currency":"USD","placed_at":"2026-11-27T13:05:07.123456Z"}
{"index":{"_id":"e2","_index":"shop-payments-2026.11.27"}}
{"event_id":"e2","order_id":"o1","outcome":"failed","reason":"card_declined","amount_cents":3998,"currency":"USD","occurred_at":"2026-11-27T13:05:08.123456Z"}
{"index":{"_id":"e1","_index":"shop-status-changes-2026.11.27"}}
{"event_id":"e1","order_id":"o1","status":"PENDING_PAYMENT","sequence":1,"occurred_at":"2026-11-27T13:05:07.123456Z"}
`
	if reqs[0] != want {
		t.Fatalf("bulk body:\n%s\nwant:\n%s", reqs[0], want)
	}
	if ct := bs.ctypes[0]; !strings.Contains(ct, "json") {
		t.Fatalf("Content-Type %q", ct)
	}
}

// TestBulk_PartialFailure_RetriesFailedItemsOnly: items rejected for a passing reason
// (429, 503) are sent again, alone; the others are not sent twice.
func TestBulk_PartialFailure_RetriesFailedItemsOnly(t *testing.T) {
	t.Parallel()
	s, bs := newSink(t, func(n, i int) int {
		if n == 1 && i == 1 {
			return 429
		}
		if n == 1 && i == 3 {
			return 503
		}
		return 201
	})
	if err := s.Write(context.Background(), batch()); err != nil {
		t.Fatal(err)
	}
	reqs := bs.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want 2", len(reqs))
	}
	want := `{"index":{"_id":"e1-1","_index":"shop-order-lines-2026.11.27"}}
{"event_id":"e1","order_id":"o1","line_no":1,"sku":"FLASH","quantity":2,"unit_price_cents":1999,"currency":"USD","placed_at":"2026-11-27T13:05:07.123456Z"}
{"index":{"_id":"e1","_index":"shop-status-changes-2026.11.27"}}
{"event_id":"e1","order_id":"o1","status":"PENDING_PAYMENT","sequence":1,"occurred_at":"2026-11-27T13:05:07.123456Z"}
`
	if reqs[1] != want {
		t.Fatalf("retry body:\n%s\nwant only the failed items:\n%s", reqs[1], want)
	}
}

// TestBulk_MappingError_FailsTheBatchWithoutRetrying: a document refused for good fails
// the batch (its events go back to the broker) and is not sent again and again.
func TestBulk_MappingError_FailsTheBatchWithoutRetrying(t *testing.T) {
	t.Parallel()
	s, bs := newSink(t, func(n, i int) int {
		if i == 0 {
			return 400
		}
		return 201
	})
	err := s.Write(context.Background(), batch())
	if err == nil || !strings.Contains(err.Error(), "mapper_parsing_exception") || !strings.Contains(err.Error(), "shop-orders-2026.11.27/e1") {
		t.Fatalf("want the refused document named, got %v", err)
	}
	if n := len(bs.requests()); n != 1 {
		t.Fatalf("%d requests, want 1", n)
	}
}

// TestBulk_StillFailing_GivesUpAfterAttempts: a cluster that keeps rejecting is asked a
// bounded number of times, then the batch fails.
func TestBulk_StillFailing_GivesUpAfterAttempts(t *testing.T) {
	t.Parallel()
	s, bs := newSink(t, func(n, i int) int { return 429 })
	if err := s.Write(context.Background(), batch()); err == nil {
		t.Fatal("a batch the cluster never took was reported written")
	}
	if n := len(bs.requests()); n != 5 {
		t.Fatalf("%d requests, want 5 (Attempts)", n)
	}
}

// The transport authenticates every request with the configured API key, and a URL that
// names no node is refused at start.
func TestTransport_APIKeyAndURLs(t *testing.T) {
	t.Parallel()
	got := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case got <- r.Header.Get("Authorization"):
		default:
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"errors":false,"items":[]}`)
	}))
	defer srv.Close()
	tp, err := esink.Transport([]string{srv.URL}, "c2VjcmV0", false)
	if err != nil {
		t.Fatal(err)
	}
	s, err := esink.New(tp, esink.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Write(context.Background(), batch()); err != nil {
		t.Fatal(err)
	}
	if a := <-got; !strings.EqualFold(a, "ApiKey c2VjcmV0") { // the scheme is case-insensitive
		t.Fatalf("Authorization %q, want the API key", a)
	}
	for _, bad := range [][]string{nil, {"not a url"}, {"http://"}} {
		if _, err := esink.Transport(bad, "", true); err == nil {
			t.Errorf("Transport(%q) accepted", bad)
		}
	}
}
