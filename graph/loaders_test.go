package graph_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/uptrace/bun"

	"github.com/checkout-backend/checkout/internal/store"
	"github.com/checkout-backend/checkout/internal/testutil"
)

// queryCounter is a bun query hook counting the SQL statements run.
type queryCounter struct {
	mu      sync.Mutex
	queries []string
}

func (c *queryCounter) BeforeQuery(ctx context.Context, _ *bun.QueryEvent) context.Context {
	return ctx
}

func (c *queryCounter) AfterQuery(_ context.Context, e *bun.QueryEvent) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.queries = append(c.queries, e.Query)
}

// during returns the statements run by fn.
func (c *queryCounter) during(fn func()) []string {
	c.mu.Lock()
	c.queries = nil
	c.mu.Unlock()
	fn()
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.queries...)
}

const ordersPage = `{ myOrders(first: 20) { edges { node { id status items { sku quantity product { sku name priceCents available } } } } } }`

func TestDataLoader_OrdersPageCostsConstantQueries(t *testing.T) {
	t.Parallel()
	counter := &queryCounter{}
	db := testutil.NewDB(t, store.Options{MaxOpenConns: 8, QueryHook: counter})
	api := testutil.NewAPI(t, db)
	const products = 12
	for i := range products {
		api.Product(t, fmt.Sprintf("P%02d", i), int64(100+i), map[string]int{"main": 1000})
	}
	place := func(customer string, orders int) string {
		tok := testutil.Token(t, customer)
		for o := range orders {
			var lines []map[string]any
			for l := range 3 { // three products per order, all different across a page
				lines = append(lines, map[string]any{"sku": fmt.Sprintf("P%02d", (o*3+l)%products), "quantity": 1})
			}
			r := api.Do(t, tok, checkoutMutation, map[string]any{"input": map[string]any{
				"idempotencyKey": fmt.Sprintf("%s-%d", customer, o), "paymentToken": "tok_visa", "items": lines}})
			if len(r.Errors) > 0 || !strings.Contains(string(r.Data), `"status":"PENDING_PAYMENT"`) {
				t.Fatalf("checkout: %s %v", r.Data, r.Errors)
			}
		}
		return tok
	}
	few, many := place("few", 2), place("many", 20)

	page := func(tok string, wantOrders int) []string {
		t.Helper()
		var resp *testutil.Response
		queries := counter.during(func() { resp = api.Do(t, tok, ordersPage, nil) })
		var data struct {
			MyOrders struct {
				Edges []struct {
					Node struct {
						Items []struct {
							SKU     string
							Product *struct{ SKU, Name string }
						}
					}
				}
			}
		}
		if len(resp.Errors) > 0 || json.Unmarshal(resp.Data, &data) != nil || len(data.MyOrders.Edges) != wantOrders {
			t.Fatalf("page: %s %v", resp.Data, resp.Errors)
		}
		for _, e := range data.MyOrders.Edges {
			for _, it := range e.Node.Items {
				if it.Product == nil || it.Product.SKU != it.SKU {
					t.Fatalf("item %s has product %+v", it.SKU, it.Product)
				}
			}
		}
		return queries
	}
	q2, q20 := page(few, 2), page(many, 20)
	// One query for the orders, one for their items, one for their products.
	if len(q2) != len(q20) || len(q20) > 3 {
		t.Fatalf("2 orders: %d queries, 20 orders: %d queries (want the same, at most 3):\n%s",
			len(q2), len(q20), strings.Join(q20, "\n"))
	}
}
