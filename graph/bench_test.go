package graph_test

import (
	"fmt"
	"testing"

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
