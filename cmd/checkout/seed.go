package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/checkout-backend/checkout/internal/catalog"
	"github.com/checkout-backend/checkout/internal/platform/config"
	"github.com/checkout-backend/checkout/internal/store"
)

// twoPerCustomer is the demo flash-sale item's purchase limit.
var twoPerCustomer = 2

// demoCatalog is the demo shop: a few products, one of them spread over two warehouses
// and one scarce (a flash-sale item, at most two per customer).
var demoCatalog = []struct {
	p     catalog.Product
	stock map[string]int
}{
	{catalog.Product{SKU: "TSHIRT-BLK-M", Name: "Black T-shirt, M", PriceCents: 1999, Currency: "USD"}, map[string]int{"ams": 120, "nyc": 80}},
	{catalog.Product{SKU: "TSHIRT-WHT-L", Name: "White T-shirt, L", PriceCents: 1999, Currency: "USD"}, map[string]int{"ams": 60}},
	{catalog.Product{SKU: "HOODIE-GRY-M", Name: "Grey hoodie, M", PriceCents: 4999, Currency: "USD"}, map[string]int{"nyc": 40}},
	{catalog.Product{SKU: "MUG-LOGO", Name: "Logo mug", PriceCents: 1299, Currency: "USD"}, map[string]int{"ams": 200, "nyc": 200}},
	{catalog.Product{SKU: "SNEAKER-LTD-42", Name: "Limited sneaker, 42 (flash sale)", PriceCents: 15000, Currency: "USD", MaxPerCustomer: &twoPerCustomer}, map[string]int{"ams": 50}},
	{catalog.Product{SKU: "CAP-RED", Name: "Red cap", PriceCents: 1499, Currency: "USD"}, map[string]int{"nyc": 75}},
	{catalog.Product{SKU: "SOCKS-3PK", Name: "Socks, 3-pack", PriceCents: 999, Currency: "USD"}, map[string]int{"ams": 300}},
	{catalog.Product{SKU: "TOTE-CANVAS", Name: "Canvas tote", PriceCents: 2499, Currency: "USD"}, map[string]int{"ams": 10, "nyc": 10}},
}

func runSeed(ctx context.Context, logger *slog.Logger) error {
	cfg, err := config.Load()
	if err != nil {
		return err
	}
	db, err := store.Open(ctx, cfg.Database.URL, store.Options{Pooled: cfg.Database.Pooled(), MaxOpenConns: 2})
	if err != nil {
		return err
	}
	defer db.Close()
	cat := store.NewCatalog(db, time.Now)
	for _, d := range demoCatalog {
		if _, err := cat.UpsertProduct(ctx, d.p); err != nil {
			return fmt.Errorf("seed %s: %w", d.p.SKU, err)
		}
		levels, err := cat.Inventory(ctx, d.p.SKU)
		if err != nil {
			return err
		}
		have := map[string]bool{}
		for _, l := range levels {
			have[l.Warehouse] = true
		}
		for wh, n := range d.stock {
			if have[wh] {
				continue // seeding again never resets stock that may be reserved
			}
			if _, err := cat.SetStock(ctx, d.p.SKU, wh, n); err != nil {
				return fmt.Errorf("seed stock %s/%s: %w", d.p.SKU, wh, err)
			}
		}
	}
	logger.Info("demo catalog loaded", "products", len(demoCatalog))
	return nil
}
