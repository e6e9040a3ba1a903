// Package catalog is the domain of products and their stock per warehouse: the types,
// their validation, and the port its adapter (internal/store) implements.
package catalog

import (
	"context"
	"regexp"
	"strings"

	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/event"
)

// Limits of catalog input.
const (
	MaxSKULen       = 64
	MaxNameLen      = 200
	MaxWarehouseLen = 64
	MaxOnHand       = 1_000_000_000
	MaxPriceCents   = 1_000_000_000_00
)

// Replica is a region's copy of the catalog as other regions change it
// (store.Catalog): ApplyProduct applies a change unless it holds a newer one.
type Replica interface {
	ApplyProduct(ctx context.Context, p event.ProductPayload) (applied bool, err error)
}

// Product is a sellable item.
type Product struct {
	SKU        string
	Name       string
	PriceCents int64
	Currency   string
	// Available is on hand minus reserved over all warehouses.
	Available int
	// MaxPerCustomer is the most units of this product one customer may hold in its
	// open and paid orders together (a flash sale's fairness); nil: no limit.
	MaxPerCustomer *int
	// KeepMaxPerCustomer, on UpsertProduct only, leaves the stored MaxPerCustomer as it
	// is (an update that does not mention the limit keeps it; a new product has none).
	KeepMaxPerCustomer bool
}

// InventoryLevel is the stock of one SKU in one warehouse.
type InventoryLevel struct {
	SKU       string
	Warehouse string
	OnHand    int
	Reserved  int
}

// Available is what can still be reserved.
func (l InventoryLevel) Available() int { return l.OnHand - l.Reserved }

// Store is the catalog's persistence port.
type Store interface {
	UpsertProduct(ctx context.Context, p Product) (Product, error)
	Product(ctx context.Context, sku string) (*Product, error)
	Products(ctx context.Context, first int, afterSKU string) ([]Product, bool, error)
	ProductsBySKU(ctx context.Context, skus []string) (map[string]Product, error)
	SetStock(ctx context.Context, sku, warehouse string, onHand int) (InventoryLevel, error)
	Inventory(ctx context.Context, sku string) ([]InventoryLevel, error)
}

var (
	idRe       = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]*$`)
	currencyRe = regexp.MustCompile(`^[A-Z]{3}$`)
)

// ValidSKU reports whether s is a well-formed SKU.
func ValidSKU(s string) bool { return len(s) <= MaxSKULen && idRe.MatchString(s) }

// ValidateProduct checks a product's input fields.
func ValidateProduct(p *Product) error {
	p.SKU = strings.TrimSpace(p.SKU)
	p.Name = strings.TrimSpace(p.Name)
	p.Currency = strings.ToUpper(strings.TrimSpace(p.Currency))
	switch {
	case !ValidSKU(p.SKU):
		return checkout.Errorf(checkout.InvalidInput, []string{"input", "sku"}, "sku must be 1-%d letters, digits, '.', '_', ':' or '-'", MaxSKULen)
	case p.Name == "" || len(p.Name) > MaxNameLen:
		return checkout.Errorf(checkout.InvalidInput, []string{"input", "name"}, "name must be 1-%d characters", MaxNameLen)
	case p.PriceCents < 0 || p.PriceCents > MaxPriceCents:
		return checkout.Errorf(checkout.InvalidInput, []string{"input", "priceCents"}, "priceCents must be between 0 and %d", int64(MaxPriceCents))
	case !currencyRe.MatchString(p.Currency):
		return checkout.Errorf(checkout.InvalidInput, []string{"input", "currency"}, "currency must be an ISO 4217 code such as USD")
	case !p.KeepMaxPerCustomer && p.MaxPerCustomer != nil && (*p.MaxPerCustomer < 1 || *p.MaxPerCustomer > MaxOnHand):
		return checkout.Errorf(checkout.InvalidInput, []string{"input", "maxPerCustomer"}, "maxPerCustomer must be between 1 and %d, or null for no limit", MaxOnHand)
	}
	return nil
}

// ValidateStock checks setStock's arguments.
func ValidateStock(sku, warehouse string, onHand int) error {
	switch {
	case !ValidSKU(sku):
		return checkout.Errorf(checkout.UnknownSKU, []string{"sku"}, "unknown sku")
	case len(warehouse) > MaxWarehouseLen || !idRe.MatchString(warehouse):
		return checkout.Errorf(checkout.InvalidInput, []string{"warehouse"}, "warehouse must be 1-%d letters, digits, '.', '_', ':' or '-'", MaxWarehouseLen)
	case onHand < 0 || onHand > MaxOnHand:
		return checkout.Errorf(checkout.InvalidQuantity, []string{"onHand"}, "onHand must be between 0 and %d", MaxOnHand)
	}
	return nil
}

// Service is the catalog's use cases over its Store: anyone reads products; only an
// admin changes the catalog or reads inventory levels.
type Service struct{ store Store }

// NewService returns the catalog service over s.
func NewService(s Store) *Service { return &Service{store: s} }

// Product returns a product by SKU, or nil.
func (s *Service) Product(ctx context.Context, sku string) (*Product, error) {
	if !ValidSKU(sku) {
		return nil, nil
	}
	return s.store.Product(ctx, sku)
}

// Products pages the catalog in SKU order.
func (s *Service) Products(ctx context.Context, first int, afterSKU string) ([]Product, bool, error) {
	return s.store.Products(ctx, first, afterSKU)
}

// ProductsBySKU loads many products at once (dataloaders).
func (s *Service) ProductsBySKU(ctx context.Context, skus []string) (map[string]Product, error) {
	return s.store.ProductsBySKU(ctx, skus)
}

// UpsertProduct creates or updates a product. Admin only.
func (s *Service) UpsertProduct(ctx context.Context, a checkout.Actor, p Product) (Product, error) {
	if err := checkout.RequireAdmin(a); err != nil {
		return Product{}, err
	}
	return s.store.UpsertProduct(ctx, p)
}

// SetStock sets a SKU's on-hand stock in a warehouse. Admin only.
func (s *Service) SetStock(ctx context.Context, a checkout.Actor, sku, warehouse string, onHand int) (InventoryLevel, error) {
	if err := checkout.RequireAdmin(a); err != nil {
		return InventoryLevel{}, err
	}
	return s.store.SetStock(ctx, sku, warehouse, onHand)
}

// Inventory lists a SKU's stock per warehouse. Admin only.
func (s *Service) Inventory(ctx context.Context, a checkout.Actor, sku string) ([]InventoryLevel, error) {
	if err := checkout.RequireAdmin(a); err != nil {
		return nil, err
	}
	return s.store.Inventory(ctx, sku)
}
