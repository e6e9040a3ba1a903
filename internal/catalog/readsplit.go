package catalog

import "context"

// ReadSplit is a Store whose reads go to Reader (a read replica, which may lag behind)
// and whose writes go to Writer (the primary). Checkout never reads through it: prices
// and stock for an order are read in the checkout's own transaction on the primary.
type ReadSplit struct {
	Writer, Reader Store
}

var _ Store = ReadSplit{}

// UpsertProduct writes to the primary.
func (s ReadSplit) UpsertProduct(ctx context.Context, p Product) (Product, error) {
	return s.Writer.UpsertProduct(ctx, p)
}

// SetStock writes to the primary.
func (s ReadSplit) SetStock(ctx context.Context, sku, warehouse string, onHand int) (InventoryLevel, error) {
	return s.Writer.SetStock(ctx, sku, warehouse, onHand)
}

// Product reads from the replica.
func (s ReadSplit) Product(ctx context.Context, sku string) (*Product, error) {
	return s.Reader.Product(ctx, sku)
}

// Products reads from the replica.
func (s ReadSplit) Products(ctx context.Context, first int, afterSKU string) ([]Product, bool, error) {
	return s.Reader.Products(ctx, first, afterSKU)
}

// ProductsBySKU reads from the replica.
func (s ReadSplit) ProductsBySKU(ctx context.Context, skus []string) (map[string]Product, error) {
	return s.Reader.ProductsBySKU(ctx, skus)
}

// Inventory reads from the replica.
func (s ReadSplit) Inventory(ctx context.Context, sku string) ([]InventoryLevel, error) {
	return s.Reader.Inventory(ctx, sku)
}
