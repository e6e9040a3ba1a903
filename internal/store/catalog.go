package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/checkout-backend/checkout/internal/catalog"
	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/event"
	"github.com/checkout-backend/checkout/outbox"
)

// Catalog implements catalog.Store.
type Catalog struct {
	db  *bun.DB
	now func() time.Time
	// region, when set (a deployment of several regions), is where this catalog's
	// admins work: each change is announced to the other regions (product.upserted).
	region string
}

// InRegion returns the catalog of one region of several: every product it creates or
// changes is announced, in the same transaction, to the other regions.
func (c *Catalog) InRegion(region string) *Catalog {
	cp := *c
	cp.region = region
	return &cp
}

// NewCatalog returns the catalog adapter; now is its clock (a nil clock panics).
func NewCatalog(db *bun.DB, now func() time.Time) *Catalog {
	mustClock("NewCatalog", now)
	return &Catalog{db: db, now: now}
}

var _ catalog.Store = (*Catalog)(nil)

type productRow struct {
	SKU        string `bun:"sku"`
	Name       string `bun:"name"`
	PriceCents int64  `bun:"price_cents"`
	Currency   string `bun:"currency"`
	Available  int    `bun:"available"`
	MaxPer     *int   `bun:"max_per_customer"`
}

func (r productRow) product() catalog.Product {
	return catalog.Product{SKU: r.SKU, Name: r.Name, PriceCents: r.PriceCents, Currency: r.Currency, Available: r.Available,
		MaxPerCustomer: r.MaxPer}
}

const productSelect = `SELECT p.sku, p.name, p.price_cents, p.currency, p.max_per_customer,
	COALESCE((SELECT a.available FROM stock_available a WHERE a.sku = p.sku), 0) AS available
	FROM products p`

// UpsertProduct creates or updates a product.
func (c *Catalog) UpsertProduct(ctx context.Context, p catalog.Product) (catalog.Product, error) {
	if err := catalog.ValidateProduct(&p); err != nil {
		return catalog.Product{}, err
	}
	now := c.now()
	var got *catalog.Product
	err := InTx(ctx, c.db, func(ctx context.Context, tx bun.Tx) error {
		// keep: the update leaves the stored limit alone (the input did not mention it).
		if _, err := tx.ExecContext(ctx, `INSERT INTO products (sku, name, price_cents, currency, max_per_customer, created_at, updated_at, updated_in)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (sku) DO UPDATE SET name = EXCLUDED.name, price_cents = EXCLUDED.price_cents,
			currency = EXCLUDED.currency, updated_at = EXCLUDED.updated_at, updated_in = EXCLUDED.updated_in,
			max_per_customer = CASE WHEN ?::boolean THEN products.max_per_customer ELSE EXCLUDED.max_per_customer END`,
			p.SKU, p.Name, p.PriceCents, p.Currency, maxPer(p), now, now, c.region, p.KeepMaxPerCustomer); err != nil {
			return err
		}
		var err error
		if got, err = productIn(ctx, tx, p.SKU); err != nil || got == nil || c.region == "" {
			return err
		}
		payload, err := json.Marshal(event.ProductPayload{SKU: got.SKU, Name: got.Name, PriceCents: got.PriceCents,
			Currency: got.Currency, MaxPerCustomer: got.MaxPerCustomer, UpdatedAt: now, Region: c.region})
		if err != nil {
			return err
		}
		return outbox.Insert(ctx, tx, event.Envelope{ID: uuid.Must(uuid.NewV7()).String(), Type: event.ProductUpserted,
			AggregateID: "product:" + got.SKU, OccurredAt: now, Payload: payload})
	})
	if err != nil {
		return catalog.Product{}, mapErr(fmt.Errorf("upsert product: %w", err))
	}
	return *got, nil
}

// ApplyProduct applies another region's change to this region's copy of the catalog,
// without announcing it again: a product it does not have is created, one it has is
// changed only if the change is newer than what it holds, by (updated_at, region), so
// every region ends with the same row whatever order changes arrive in. It reports
// whether the change was applied.
func (c *Catalog) ApplyProduct(ctx context.Context, p event.ProductPayload) (bool, error) {
	if err := catalog.ValidateProduct(&catalog.Product{SKU: p.SKU, Name: p.Name, PriceCents: p.PriceCents, Currency: p.Currency,
		MaxPerCustomer: p.MaxPerCustomer}); err != nil {
		return false, err
	}
	res, err := c.db.ExecContext(ctx, `INSERT INTO products (sku, name, price_cents, currency, max_per_customer, created_at, updated_at, updated_in)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (sku) DO UPDATE SET name = EXCLUDED.name, price_cents = EXCLUDED.price_cents, currency = EXCLUDED.currency,
			max_per_customer = EXCLUDED.max_per_customer, updated_at = EXCLUDED.updated_at, updated_in = EXCLUDED.updated_in
		WHERE (products.updated_at, products.updated_in) < (EXCLUDED.updated_at, EXCLUDED.updated_in)`,
		p.SKU, p.Name, p.PriceCents, p.Currency, p.MaxPerCustomer, p.UpdatedAt, p.UpdatedAt, p.Region)
	if err != nil {
		return false, mapErr(fmt.Errorf("apply product %s: %w", p.SKU, err))
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// maxPer is the limit an upsert writes when it sets one.
func maxPer(p catalog.Product) *int {
	if p.KeepMaxPerCustomer {
		return nil
	}
	return p.MaxPerCustomer
}

// Product returns a product by SKU, or nil.
func (c *Catalog) Product(ctx context.Context, sku string) (*catalog.Product, error) {
	return productIn(ctx, c.db, sku)
}

func productIn(ctx context.Context, db bun.IDB, sku string) (*catalog.Product, error) {
	var r productRow
	err := db.NewRaw(productSelect+" WHERE p.sku = ?", sku).Scan(ctx, &r)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, mapErr(fmt.Errorf("product: %w", err))
	}
	p := r.product()
	return &p, nil
}

// Products pages the catalog in SKU order.
func (c *Catalog) Products(ctx context.Context, first int, afterSKU string) ([]catalog.Product, bool, error) {
	var rows []productRow
	if err := c.db.NewRaw(productSelect+" WHERE p.sku > ? ORDER BY p.sku LIMIT ?", afterSKU, first+1).Scan(ctx, &rows); err != nil {
		return nil, false, mapErr(fmt.Errorf("products: %w", err))
	}
	more := len(rows) > first
	if more {
		rows = rows[:first]
	}
	out := make([]catalog.Product, len(rows))
	for i, r := range rows {
		out[i] = r.product()
	}
	return out, more, nil
}

// ProductsBySKU loads many products in one query (for dataloaders).
func (c *Catalog) ProductsBySKU(ctx context.Context, skus []string) (map[string]catalog.Product, error) {
	out := map[string]catalog.Product{}
	if len(skus) == 0 {
		return out, nil
	}
	var rows []productRow
	if err := c.db.NewRaw(productSelect+" WHERE p.sku IN (?)", bun.List(skus)).Scan(ctx, &rows); err != nil {
		return nil, mapErr(fmt.Errorf("products by sku: %w", err))
	}
	for _, r := range rows {
		out[r.SKU] = r.product()
	}
	return out, nil
}

type levelRow struct {
	SKU       string `bun:"sku"`
	Warehouse string `bun:"warehouse"`
	OnHand    int    `bun:"on_hand"`
	Reserved  int    `bun:"reserved"`
}

// SetStock sets on_hand of a SKU in a warehouse as the API shows it (pending sales
// folded in); it cannot go below what unpaid orders hold.
func (c *Catalog) SetStock(ctx context.Context, sku, warehouse string, onHand int) (catalog.InventoryLevel, error) {
	if err := catalog.ValidateStock(sku, warehouse, onHand); err != nil {
		return catalog.InventoryLevel{}, err
	}
	var r levelRow
	err := InTx(ctx, c.db, func(ctx context.Context, tx bun.Tx) error {
		now := c.now()
		// The row is locked first: the pending sales read next are those a fold left.
		if _, err := tx.ExecContext(ctx, `INSERT INTO inventory (sku, warehouse, on_hand, updated_at) VALUES (?, ?, 0, ?)
			ON CONFLICT (sku, warehouse) DO UPDATE SET updated_at = EXCLUDED.updated_at`, sku, warehouse, now); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE inventory SET on_hand = ? + COALESCE((SELECT sum(sold) FROM stock_moves m
			WHERE m.sku = inventory.sku AND m.warehouse = inventory.warehouse), 0), version = version + 1
			WHERE sku = ? AND warehouse = ?`, onHand, sku, warehouse); err != nil {
			return err
		}
		return tx.NewRaw("SELECT sku, warehouse, on_hand, reserved FROM inventory_levels WHERE sku = ? AND warehouse = ?", sku, warehouse).Scan(ctx, &r)
	})
	switch PgCode(err) {
	case "":
	case "23503":
		return catalog.InventoryLevel{}, checkout.Errorf(checkout.UnknownSKU, []string{"sku"}, "unknown sku %q", sku)
	case "23514":
		return catalog.InventoryLevel{}, checkout.Errorf(checkout.InvalidQuantity, []string{"onHand"}, "onHand cannot be below the units reserved by unpaid orders")
	default:
		return catalog.InventoryLevel{}, mapErr(fmt.Errorf("set stock: %w", err))
	}
	return catalog.InventoryLevel(r), nil
}

// Inventory lists a SKU's stock per warehouse.
func (c *Catalog) Inventory(ctx context.Context, sku string) ([]catalog.InventoryLevel, error) {
	var rows []levelRow
	if err := c.db.NewRaw("SELECT sku, warehouse, on_hand, reserved FROM inventory_levels WHERE sku = ? ORDER BY warehouse", sku).Scan(ctx, &rows); err != nil {
		return nil, mapErr(fmt.Errorf("inventory: %w", err))
	}
	out := make([]catalog.InventoryLevel, len(rows))
	for i, r := range rows {
		out[i] = catalog.InventoryLevel(r)
	}
	return out, nil
}
