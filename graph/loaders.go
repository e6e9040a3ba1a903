package graph

import (
	"context"
	"net/http"
	"time"

	"github.com/vikstrous/dataloadgen"

	"github.com/checkout-backend/checkout/internal/catalog"
	"github.com/checkout-backend/checkout/internal/checkout"
)

// Loaders are the request-scoped dataloaders: every product a page needs is read in one
// query.
type Loaders struct {
	Product *dataloadgen.Loader[string, catalog.Product]
}

type loadersKey struct{}

func loadersFrom(ctx context.Context) *Loaders {
	l, _ := ctx.Value(loadersKey{}).(*Loaders)
	return l
}

// ProductReader reads many products at once.
type ProductReader interface {
	ProductsBySKU(ctx context.Context, skus []string) (map[string]catalog.Product, error)
}

// LoaderMiddleware installs fresh dataloaders on each request.
func LoaderMiddleware(c ProductReader, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l := &Loaders{Product: dataloadgen.NewMappedLoader(func(ctx context.Context, skus []string) (map[string]catalog.Product, error) {
			return c.ProductsBySKU(ctx, skus)
		}, dataloadgen.WithWait(time.Millisecond))}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), loadersKey{}, l)))
	})
}

// primeProducts loads every product a page of orders names in one batch, so the items'
// product fields are answered from the loader's cache whatever order gqlgen resolves
// them in.
func primeProducts(ctx context.Context, orders []checkout.Order) {
	l := loadersFrom(ctx)
	if l == nil {
		return
	}
	seen := map[string]bool{}
	var skus []string
	for _, o := range orders {
		for _, it := range o.Items {
			if !seen[it.SKU] {
				seen[it.SKU] = true
				skus = append(skus, it.SKU)
			}
		}
	}
	if len(skus) > 0 {
		l.Product.LoadAll(ctx, skus)
	}
}
