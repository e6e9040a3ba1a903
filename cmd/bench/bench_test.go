package main

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/checkout-backend/checkout/internal/testutil"
)

func TestClassify(t *testing.T) {
	cases := []struct {
		name string
		res  vegeta.Result
		want string
	}{
		{"placed", vegeta.Result{Code: 200, Body: []byte(`{"data":{"checkout":{"order":{"id":"o1","status":"PENDING_PAYMENT"},"userErrors":[]}}}`)}, kindPlaced},
		{"out of stock", vegeta.Result{Code: 200, Body: []byte(`{"data":{"checkout":{"order":null,"userErrors":[{"code":"OUT_OF_STOCK","field":["items","0"],"message":"x"}]}}}`)}, kindOutOfStock},
		{"other user error", vegeta.Result{Code: 200, Body: []byte(`{"data":{"checkout":{"order":null,"userErrors":[{"code":"UNKNOWN_SKU"}]}}}`)}, "userErrors UNKNOWN_SKU"},
		{"graphql error", vegeta.Result{Code: 200, Body: []byte(`{"errors":[{"message":"internal server error","extensions":{"code":"INTERNAL_SERVER_ERROR"}}],"data":null}`)}, "GraphQL INTERNAL_SERVER_ERROR"},
		{"graphql error without code", vegeta.Result{Code: 200, Body: []byte(`{"errors":[{"message":"boom"}],"data":null}`)}, `GraphQL "boom"`},
		{"busy", vegeta.Result{Code: 503, Body: []byte(`service busy`)}, "HTTP 503"},
		{"unauthenticated", vegeta.Result{Code: 401, Body: []byte(`{"errors":[{"message":"no","extensions":{"code":"UNAUTHENTICATED"}}]}`)}, "HTTP 401 UNAUTHENTICATED"},
		{"garbage", vegeta.Result{Code: 200, Body: []byte(`<html>`)}, "undecodable response"},
		{"transport", vegeta.Result{Error: `Post "http://127.0.0.1:4321/graphql": read tcp 127.0.0.1:50412->127.0.0.1:4321: read: connection reset by peer`}, "transport: read tcp <addr>-><addr>: read: connection reset by peer"},
	}
	for _, c := range cases {
		if got := classify(&c.res); got != c.want {
			t.Errorf("%s: classify = %q, want %q", c.name, got, c.want)
		}
	}
}

func TestWorkloadItems(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	cat := spread.catalog("P")
	if len(cat) != 200 || cat[0].InitialStock() != 1000 || len(cat[0].Stock) != 2 {
		t.Fatalf("spread catalog: %d SKUs, first %+v", len(cat), cat[0])
	}
	for i := 0; i < 1000; i++ {
		lines := spread.items(r, cat)
		if len(lines) < 1 || len(lines) > 3 {
			t.Fatalf("%d lines", len(lines))
		}
		seen := map[string]bool{}
		for _, l := range lines {
			if seen[l.SKU] || l.Quantity < 1 || l.Quantity > 2 {
				t.Fatalf("bad basket %+v", lines)
			}
			seen[l.SKU] = true
		}
	}
	fs := flashSale.catalog("P")
	if len(fs) != 1 || fs[0].InitialStock() != 500 {
		t.Fatalf("flash-sale catalog %+v", fs)
	}
}

func TestParseFlags(t *testing.T) {
	t.Setenv("DATABASE_URL", "")
	o, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(o.workloads, ",") != "flash-sale,spread,fanout" || o.duration != 10*time.Second || o.subscribers != 1000 || o.fanoutOrders != 10 || o.settle != 20*time.Second || o.concurrency != 64 || o.rate != 0 || o.url != "" || len(o.jwtSecret) < 32 {
		t.Fatalf("defaults: %+v", o)
	}
	o, err = parseFlags([]string{"-soak"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(o.workloads, ",") != "spread" || o.duration != 10*time.Minute || o.rate != 50 {
		t.Fatalf("soak: %+v", o)
	}
	o, err = parseFlags([]string{"-soak", "-duration", "1m", "-workload", "flash-sale"}, io.Discard)
	if err != nil || o.duration != time.Minute || o.workloads[0] != "flash-sale" || o.rate != 50 {
		t.Fatalf("soak with overrides: %+v %v", o, err)
	}
	o, err = parseFlags([]string{"-requests", "100"}, io.Discard)
	if err != nil || o.duration != 0 || o.requests != 100 {
		t.Fatalf("-requests: %+v %v", o, err)
	}
	for _, bad := range [][]string{
		{"-workload", "nope"},
		{"-url", "http://192.0.2.1:8080"},
		{"-url", "http://127.0.0.1:8080/graphql"},
		{"-database-url", "postgres://postgres@192.0.2.1:5432/x"},
		{"-bench-db", "Robert'); DROP"},
		{"-jwt-secret", "x"}, // only with -url
		{"-concurrency", "0"},
		{"-subscribers", "0"},
		{"-fanout-orders", "0"},
		{"-fanout-orders", "1001"},
		{"-settle", "-1s"},
		{"-workload", "fanout,nope"},
	} {
		if _, err := parseFlags(bad, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) accepted", bad)
		}
	}
	if _, err := parseFlags([]string{"-url", "http://localhost:8080", "-database-url", "postgres://postgres@[::1]:5432/checkout"}, io.Discard); err != nil {
		t.Errorf("loopback -url refused: %v", err)
	}
}

func TestRecreateDatabaseRefusesTheServiceDatabase(t *testing.T) {
	if _, err := recreateDatabase(context.Background(), "postgres://postgres@127.0.0.1:5432/checkout", "checkout"); err == nil {
		t.Fatal("would drop the database of DATABASE_URL")
	}
}

func TestReportPrint(t *testing.T) {
	r := &Report{Workload: "w", About: "about", Concurrency: 4, loadStats: loadStats{
		Requests: 10, Elapsed: 2 * time.Second, Placed: 4, OutOfStock: 5,
		Errors: map[string]uint64{"HTTP 503": 1},
	}}
	sec := Section{Title: "probe"}
	sec.Add("oversell", "%d", 1)
	r.Sections = append(r.Sections, sec)
	r.Fail("oversell 1")
	var b bytes.Buffer
	r.Print(&b)
	out := b.String()
	for _, want := range []string{"== w: about", "checkouts/s", "2.0", "req/s", "5.0", "HTTP 503", "-- probe", "oversell", "FAILED", "- oversell 1"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

// TestIntegrityProbe runs the check on a database with a consistent and an oversold
// SKU (written directly: the API never makes the latter).
func TestIntegrityProbe(t *testing.T) {
	db := testutil.NewDB(t)
	ctx := context.Background()
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.ExecContext(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	// OK: 10 units, an order of 3 pending (reserved 3) and one of 2 paid (sold 2).
	// BAD: 5 units, all reserved, but orders hold 7.
	exec(`INSERT INTO products (sku, name, price_cents, currency, created_at, updated_at) VALUES ('OK', 'ok', 100, 'USD', now(), now()), ('BAD', 'bad', 100, 'USD', now(), now())`)
	exec(`INSERT INTO inventory (sku, warehouse, on_hand, reserved, updated_at) VALUES ('OK', 'a', 4, 3, now()), ('OK', 'b', 4, 0, now()), ('BAD', 'a', 5, 5, now())`)
	order := func(id, status, sku string, qty int) {
		exec(`INSERT INTO orders (id, customer_id, status, total_cents, currency, created_at, updated_at) VALUES (?, 'bench-x-w-0001', ?, 0, 'USD', now(), now())`, id, status)
		exec(`INSERT INTO order_items (order_id, line_no, sku, quantity, unit_price_cents) VALUES (?, 1, ?, ?, 100)`, id, sku, qty)
	}
	order("00000000-0000-0000-0000-000000000001", "PENDING_PAYMENT", "OK", 3)
	order("00000000-0000-0000-0000-000000000002", "PAID", "OK", 2)
	order("00000000-0000-0000-0000-000000000003", "CANCELLED", "OK", 9)
	order("00000000-0000-0000-0000-000000000004", "PENDING_PAYMENT", "BAD", 7)

	pool, err := pgxpool.New(ctx, db.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	check := func(catalog []productSpec, placed uint64) *Report {
		t.Helper()
		env := &runEnv{db: pool, catalog: catalog, customerPrefix: "bench-x-w-"}
		r := &Report{loadStats: loadStats{Placed: placed}}
		if err := (integrityProbe{}).After(ctx, env, r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	ok := productSpec{SKU: "OK", Stock: map[string]int{"a": 5, "b": 5}}
	if r := check([]productSpec{ok}, 4); len(r.Failures) != 0 {
		t.Fatalf("consistent SKU failed: %v", r.Failures)
	}
	r := check([]productSpec{ok, {SKU: "BAD", Stock: map[string]int{"a": 5}}}, 5)
	got := strings.Join(r.Failures, "\n")
	for _, want := range []string{"oversell 1", "reserved + sold != ordered on 1 SKUs", "5 orders acknowledged by the API but only 4"} {
		if !strings.Contains(got, want) {
			t.Errorf("failures lack %q:\n%s", want, got)
		}
	}
}
