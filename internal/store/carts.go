package store

import (
	"context"
	"fmt"
	"time"

	"github.com/uptrace/bun"

	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/event"
	"github.com/checkout-backend/checkout/outbox"
)

// Carts implements checkout.CartStore.
type Carts struct {
	db  *bun.DB
	now func() time.Time
}

// NewCarts returns the cart adapter; now is its clock (a nil clock panics).
func NewCarts(db *bun.DB, now func() time.Time) *Carts {
	mustClock("NewCarts", now)
	return &Carts{db: db, now: now}
}

var _ checkout.CartStore = (*Carts)(nil)

type cartRow struct {
	ID         string    `bun:"id"`
	CustomerID string    `bun:"customer_id"`
	OrderID    *string   `bun:"order_id"`
	CreatedAt  time.Time `bun:"created_at"`
	UpdatedAt  time.Time `bun:"updated_at"`
}

type cartItemRow struct {
	SKU        string `bun:"sku"`
	Quantity   int    `bun:"quantity"`
	PriceCents int64  `bun:"price_cents"`
	Currency   string `bun:"currency"`
}

// CreateCart inserts an empty cart, and its cart.created event in the same transaction.
func (c *Carts) CreateCart(ctx context.Context, id, customerID string, now time.Time) (checkout.Cart, error) {
	err := InTx(ctx, c.db, func(ctx context.Context, tx bun.Tx) error {
		if _, err := tx.ExecContext(ctx, "INSERT INTO carts (id, customer_id, created_at, updated_at) VALUES (?, ?, ?, ?)", id, customerID, now, now); err != nil {
			return fmt.Errorf("create cart: %w", err)
		}
		// Analytics counts carts that became orders: a cart announces itself.
		env, err := event.New(event.CartCreated, id, now, event.CartPayload{CartID: id, CustomerID: customerID, CreatedAt: now.UTC()})
		if err != nil {
			return err
		}
		return outbox.Insert(ctx, tx, env)
	})
	if err != nil {
		return checkout.Cart{}, mapErr(err)
	}
	return checkout.Cart{ID: id, CustomerID: customerID, CreatedAt: now, UpdatedAt: now, Items: []checkout.CartItem{}}, nil
}

// Cart loads a cart with its items at current prices, or nil.
func (c *Carts) Cart(ctx context.Context, id string) (*checkout.Cart, error) {
	cart, err := loadCart(ctx, c.db, id, false)
	return cart, mapErr(err)
}

func loadCart(ctx context.Context, db bun.IDB, id string, lock bool) (*checkout.Cart, error) {
	r, err := oneRow[cartRow](ctx, db, "SELECT id, customer_id, order_id, created_at, updated_at FROM carts WHERE id = ?", lock, id)
	if err != nil || r == nil {
		return nil, wrapf(err, "cart")
	}
	var items []cartItemRow
	if err := db.NewRaw(`SELECT ci.sku, ci.quantity, p.price_cents, p.currency FROM cart_items ci
		JOIN products p ON p.sku = ci.sku WHERE ci.cart_id = ? ORDER BY ci.added_at, ci.sku`, id).Scan(ctx, &items); err != nil {
		return nil, fmt.Errorf("cart items: %w", err)
	}
	cart := &checkout.Cart{ID: r.ID, CustomerID: r.CustomerID, OrderID: r.OrderID, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt, Items: []checkout.CartItem{}}
	for _, it := range items {
		cart.Items = append(cart.Items, checkout.CartItem{SKU: it.SKU, Quantity: it.Quantity, UnitPriceCents: it.PriceCents, Currency: it.Currency})
	}
	return cart, nil
}

// SetCartItem changes one line of an open cart of the customer.
func (c *Carts) SetCartItem(ctx context.Context, cartID, customerID, sku string, quantity int, add bool, maxQuantity int) (checkout.Cart, error) {
	var out *checkout.Cart
	err := InTx(ctx, c.db, func(ctx context.Context, tx bun.Tx) error {
		cart, err := loadCart(ctx, tx, cartID, true)
		if err != nil {
			return err
		}
		if cart == nil || cart.CustomerID != customerID {
			return checkout.Errorf(checkout.CartNotFound, []string{"cartId"}, "cart not found")
		}
		if cart.OrderID != nil {
			return checkout.Errorf(checkout.CartNotFound, []string{"cartId"}, "cart was checked out; create a new cart")
		}
		var exists bool
		if err := tx.NewRaw("SELECT EXISTS (SELECT 1 FROM products WHERE sku = ?)", sku).Scan(ctx, &exists); err != nil {
			return fmt.Errorf("cart product: %w", err)
		}
		if !exists {
			return checkout.Errorf(checkout.UnknownSKU, []string{"sku"}, "unknown sku %q", sku)
		}
		var current int
		for _, it := range cart.Items {
			if it.SKU == sku {
				current = it.Quantity
			}
		}
		if add {
			quantity += current
		}
		if quantity > maxQuantity {
			return checkout.Errorf(checkout.InvalidQuantity, []string{"quantity"}, "at most %d units of one sku", maxQuantity)
		}
		if !add && current == 0 && quantity == 0 {
			// Removing a line that is not there changes nothing.
		} else if quantity == 0 {
			if _, err := tx.ExecContext(ctx, "DELETE FROM cart_items WHERE cart_id = ? AND sku = ?", cartID, sku); err != nil {
				return fmt.Errorf("remove cart item: %w", err)
			}
		} else {
			if current == 0 && len(cart.Items) >= checkout.MaxLines {
				return checkout.Errorf(checkout.InvalidInput, []string{"sku"}, "a cart holds at most %d lines", checkout.MaxLines)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO cart_items (cart_id, sku, quantity, added_at) VALUES (?, ?, ?, ?)
				ON CONFLICT (cart_id, sku) DO UPDATE SET quantity = EXCLUDED.quantity`, cartID, sku, quantity, c.now()); err != nil {
				return fmt.Errorf("set cart item: %w", err)
			}
		}
		if _, err := tx.ExecContext(ctx, "UPDATE carts SET updated_at = ? WHERE id = ?", c.now(), cartID); err != nil {
			return err
		}
		out, err = loadCart(ctx, tx, cartID, false)
		return err
	})
	if err != nil {
		return checkout.Cart{}, err
	}
	return *out, nil
}
