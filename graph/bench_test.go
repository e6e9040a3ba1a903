package graph_test

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/checkout-backend/checkout/internal/catalog"
	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/store"
	"github.com/checkout-backend/checkout/internal/testutil"
)

// BenchmarkCheckout measures one checkout through the whole HTTP handler (JWT, limits,
// GraphQL, the domain, the store), on one hot SKU, with no broker or workers: the
// request path alone. go test -run '^$' -bench Checkout ./graph/
func BenchmarkCheckout(b *testing.B) {
	for _, strategy := range []store.Strategy{store.StrategyLock, store.StrategyBatch} {
		b.Run(string(strategy), func(b *testing.B) {
			db := testutil.NewDB(b, store.Options{MaxOpenConns: 16})
			api := testutil.NewAPI(b, db, testutil.APIOptions{Strategy: strategy})
			api.Product(b, "HOT", 100, map[string]int{"w": 100_000_000})
			tok := testutil.Token(b, "buyer")
			q := `mutation($in: CheckoutInput!) { checkout(input: $in) { order { id status } userErrors { code } } }`
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					i++
					resp := api.Do(b, tok, q, map[string]any{"in": map[string]any{"idempotencyKey": fmt.Sprintf("%p-%d", pb, i),
						"paymentToken": "tok_visa", "items": []any{map[string]any{"sku": "HOT", "quantity": 1}}}})
					if len(resp.Errors) > 0 {
						b.Fatalf("%+v", resp.Errors)
					}
				}
			})
		})
	}
}

// BenchmarkCheckout_PurchaseLimits measures what the purchase limits cost a checkout
// (the lock on the customer and the counts, in the checkout's transaction): off, the
// service-wide bounds (unpaid orders, failed payments), and those with a product limit
// on the line too; 1000 customers. go test -run '^$' -bench PurchaseLimits ./graph/
func BenchmarkCheckout_PurchaseLimits(b *testing.B) {
	for _, c := range []struct {
		name    string
		bounds  bool
		product bool
	}{{"off", false, false}, {"bounds", true, false}, {"bounds+product", true, true}} {
		b.Run(c.name, func(b *testing.B) {
			db := testutil.NewDB(b, store.Options{MaxOpenConns: 16})
			api := testutil.NewAPI(b, db, testutil.APIOptions{Strategy: store.StrategyLock})
			if c.bounds {
				api.Service.Limits = checkout.PurchaseLimits{MaxUnpaidOrders: 1 << 30, MaxFailedPayments: 5, FailedPaymentWindow: time.Hour}
			}
			limit := catalog.MaxOnHand
			p := catalog.Product{SKU: "HOT", Name: "hot", PriceCents: 100, Currency: "USD"}
			if c.product {
				p.MaxPerCustomer = &limit
			}
			if _, err := api.Catalog.UpsertProduct(b.Context(), p); err != nil {
				b.Fatal(err)
			}
			api.Product(b, "HOT", 100, map[string]int{"w": 100_000_000})
			if c.product { // api.Product upserted without a limit
				if _, err := api.Catalog.UpsertProduct(b.Context(), p); err != nil {
					b.Fatal(err)
				}
			}
			tokens := make([]string, 1000)
			for i := range tokens {
				tokens[i] = testutil.Token(b, fmt.Sprint("buyer-", i))
			}
			var next atomic.Int64
			q := `mutation($in: CheckoutInput!) { checkout(input: $in) { order { id status } userErrors { code } } }`
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					n := next.Add(1)
					resp, err := api.Post(tokens[n%int64(len(tokens))], q, map[string]any{"in": map[string]any{"idempotencyKey": fmt.Sprint("k-", n),
						"paymentToken": "tok_visa", "items": []any{map[string]any{"sku": "HOT", "quantity": 1}}}})
					if err != nil || len(resp.Errors) > 0 || strings.Contains(string(resp.Data), "code") {
						b.Errorf("%v %+v %s", err, resp, resp.Data)
						return
					}
				}
			})
		})
	}
}
