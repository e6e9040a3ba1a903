package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/checkout-backend/checkout/internal/testutil"
)

func TestDistribution(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	d := distribution(ds)
	// As percentile_cont: p50 of 1..100 is 50.5, p99 is 99.01.
	if d.N != 100 || d.P50 != 50500*time.Microsecond || d.P99 != 99010*time.Microsecond || d.Max != 100*time.Millisecond {
		t.Fatalf("distribution(1..100ms) = %+v", d)
	}
	if d := distribution([]time.Duration{7 * time.Millisecond}); d.P50 != 7*time.Millisecond || d.P99 != 7*time.Millisecond {
		t.Fatalf("one sample: %+v", d)
	}
	if s := distribution(nil).String(); !strings.Contains(s, "n/a") {
		t.Fatalf("empty distribution prints %q", s)
	}
}

func TestReportPrintNoAttack(t *testing.T) {
	r := &Report{Workload: "fanout", About: "about", NoAttack: true}
	sec := Section{Title: "subscribers"}
	sec.Add("subscribers connected", "%d of %d", 3, 3)
	r.Sections = append(r.Sections, sec)
	var b bytes.Buffer
	r.Print(&b)
	out := b.String()
	if strings.Contains(out, "checkouts/s") || strings.Contains(out, "requests") || !strings.Contains(out, "subscribers connected  3 of 3") || !strings.Contains(out, "OK") {
		t.Fatalf("report:\n%s", out)
	}
}

func TestSubscriberHandle(t *testing.T) {
	next := func(status, updatedAt string) wsMessage {
		return wsMessage{ID: "1", Type: "next", Payload: json.RawMessage(`{"data":{"orderStatusChanged":{"id":"o1","status":"` + status + `","updatedAt":"` + updatedAt + `"}}}`)}
	}
	s := &subscriber{orderID: "o1"}
	at := time.Date(2026, 1, 1, 0, 0, 1, 0, time.UTC)
	if !s.handle(next("PAID", "2026-01-01T00:00:00Z"), at) || s.first != "PAID" || s.updates != 0 {
		t.Fatalf("first message: %+v", s)
	}
	if !s.handle(next("SHIPPED", "2026-01-01T00:00:00.96Z"), at) || s.updates != 1 || s.receiveAt.Sub(s.updatedAt) != 40*time.Millisecond {
		t.Fatalf("update: %+v", s)
	}
	if !s.handle(wsMessage{ID: "1", Type: "complete"}, at) || !s.completed || s.err != "" {
		t.Fatalf("complete: %+v", s)
	}
	s = &subscriber{}
	if s.handle(wsMessage{ID: "1", Type: "next", Payload: json.RawMessage(`{"errors":[{"message":"x","extensions":{"code":"SLOW_SUBSCRIBER"}}]}`)}, at) || s.err != "next with error SLOW_SUBSCRIBER" {
		t.Fatalf("error payload: %+v", s)
	}
	s = &subscriber{}
	if s.handle(wsMessage{ID: "1", Type: "error", Payload: json.RawMessage(`[{"message":"order not found","extensions":{"code":"NOT_FOUND"}}]`)}, at) || s.err != "error message NOT_FOUND" {
		t.Fatalf("error message: %+v", s)
	}
}

// TestCreateCatalogBatches: every request stays within the service's default limits of
// 10 root fields (and aliases), a product's upsert comes before its stock in the same
// request, and a shed answer (429) is retried.
func TestCreateCatalogBatches(t *testing.T) {
	var calls, shed atomic.Int32
	seen := map[string]bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 2 && shed.Add(1) == 1 {
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, `{"errors":[{"message":"slow down","extensions":{"code":"RATE_LIMITED"}}]}`)
			return
		}
		var body struct{ Query string }
		json.NewDecoder(r.Body).Decode(&body)
		fields := 0
		for _, l := range strings.Split(body.Query, "\n") {
			l = strings.TrimSpace(l)
			switch {
			case strings.Contains(l, "upsertProduct("):
				fields++
				seen[strings.Split(strings.Split(l, "sku: \"")[1], "\"")[0]] = true
			case strings.Contains(l, "setStock("):
				fields++
				if sku := strings.Split(strings.Split(l, "sku: \"")[1], "\"")[0]; !seen[sku] {
					t.Errorf("stock of %s set before its product", sku)
				}
			}
		}
		if fields > 10 {
			t.Errorf("%d root fields in one request", fields)
		}
		io.WriteString(w, `{"data":{}}`)
	}))
	defer srv.Close()
	c, err := newGraphQLClient(srv.URL, strings.Repeat("s", 32), "admin", []string{"admin"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.createCatalog(context.Background(), spread.catalog("P")); err != nil {
		t.Fatal(err)
	}
	if len(seen) != spreadSKUs || shed.Load() != 1 {
		t.Fatalf("%d products created, %d shed answers", len(seen), shed.Load())
	}
}

// TestPipelineProbe reads known timestamps back: the workload's orders only.
func TestPipelineProbe(t *testing.T) {
	db := testutil.NewDB(t)
	ctx := context.Background()
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.ExecContext(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	n := 0
	order := func(customer, status string, paidAfter, publishAfter, processAfter int) string {
		n++
		id := "00000000-0000-0000-0000-00000000000" + string(rune('0'+n))
		exec(`INSERT INTO orders (id, customer_id, status, total_cents, currency, created_at, updated_at) VALUES (?, ?, ?, 0, 'USD', ?, ?)`,
			id, customer, status, t0, ms(paidAfter))
		placed := "10000000-0000-0000-0000-00000000000" + string(rune('0'+n))
		exec(`INSERT INTO outbox (event_id, type, aggregate_id, payload, created_at, published_at) VALUES (?, 'order.placed', ?, '{}', ?, ?)`,
			placed, id, t0, ms(publishAfter))
		exec(`INSERT INTO inbox (consumer, event_id, processed_at) VALUES ('payment', ?, ?)`, placed, ms(processAfter))
		if status == "PAID" {
			exec(`INSERT INTO outbox (event_id, type, aggregate_id, payload, created_at, published_at) VALUES (?, 'order.paid', ?, '{}', ?, ?)`,
				"20000000-0000-0000-0000-00000000000"+string(rune('0'+n)), id, ms(paidAfter), ms(paidAfter+5))
			exec(`INSERT INTO payments (order_id, provider, amount_cents, currency, status, created_at, updated_at) VALUES (?, 'sandbox', 0, 'USD', 'succeeded', now(), now())`, id)
		}
		return id
	}
	order("bench-x-w-0001", "PAID", 100, 10, 50)
	order("bench-x-w-0002", "PAID", 200, 20, 60)
	order("bench-x-w-0003", "PAID", 300, 30, 70)
	order("someone-else", "PAID", 9000, 9000, 9000) // not the workload's

	pool, err := pgxpool.New(ctx, db.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	f, err := readPipeline(ctx, pool, "bench-x-w-")
	if err != nil {
		t.Fatal(err)
	}
	want := func(name string, got durStats, n int, p50, mx time.Duration) {
		t.Helper()
		if got.N != n || got.P50 != p50 || got.Max != mx {
			t.Errorf("%s = %+v, want n %d, p50 %s, max %s", name, got, n, p50, mx)
		}
	}
	want("end to end", f.endToEnd, 3, 60*time.Millisecond, 70*time.Millisecond)
	want("checkout to PAID", f.toPaid, 3, 200*time.Millisecond, 300*time.Millisecond)
	// Publish lags 5, 5, 5, 10, 20, 30 ms.
	want("publish lag", f.publishLag, 6, 7500*time.Microsecond, 30*time.Millisecond)
	if f.published != 6 || f.peakPerSec != 6 || f.lastPub.Sub(f.firstPub) != 295*time.Millisecond || f.placed != 3 || f.unpublished != 0 {
		t.Errorf("relay figures %+v", f)
	}

	env := &runEnv{db: pool, customerPrefix: "bench-x-w-", opts: options{settle: time.Second}}
	r := &Report{}
	if err := (pipelineProbe{}).After(ctx, env, r); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	r.Print(&b)
	for _, s := range []string{"payments landed", "all, and the outbox drained", "end-to-end lag", "p50 60.0ms", "3 of 3 events", "checkout to PAID", "p50 200.0ms", "peak 6 in one second"} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("report lacks %q:\n%s", s, b.String())
		}
	}

	// An order still waiting for its payment: the wait runs out and says so.
	exec(`INSERT INTO orders (id, customer_id, status, total_cents, currency, created_at, updated_at) VALUES ('00000000-0000-0000-0000-0000000000aa', 'bench-x-w-0009', 'PENDING_PAYMENT', 0, 'USD', now(), now())`)
	env.opts.settle = 300 * time.Millisecond
	r = &Report{}
	if err := (pipelineProbe{}).After(ctx, env, r); err != nil {
		t.Fatal(err)
	}
	b.Reset()
	r.Print(&b)
	if !strings.Contains(b.String(), "NOT all: 1 orders still PENDING_PAYMENT") {
		t.Errorf("report after a timed-out wait:\n%s", b.String())
	}
}
