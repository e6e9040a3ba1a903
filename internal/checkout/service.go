package checkout

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/google/uuid"

	"github.com/checkout-backend/checkout/internal/cardnum"
)

// Limits of checkout input.
const (
	MaxLineQuantity   = 10_000
	MaxLines          = 100
	MaxIdempotencyKey = 255
	MaxPaymentToken   = 255
	MaxTrackingNumber = 100
	MaxPageSize       = 100
)

// Service runs the checkout use cases over the ports.
type Service struct {
	orders OrderStore
	carts  CartStore
	ttl    time.Duration
	now    func() time.Time
	// CheckoutTimeout, when positive, bounds each checkout: past it the caller gets
	// ErrUnavailable (retryable with the same key) instead of waiting on.
	CheckoutTimeout time.Duration
	// Limits bound what one customer may hold unpaid (zero values: no bound).
	Limits PurchaseLimits
	// Regions is the deployment's regions: new orders' ids carry this one (the zero
	// value: one region, plain UUIDv7 ids).
	Regions Regions
}

// NewService builds a Service; ttl is how long a reservation is held unpaid, and now is
// the clock of its checkouts (their Now and reservation expiry). The clock is a
// dependency like the stores: a nil one is refused, never defaulted.
func NewService(orders OrderStore, carts CartStore, ttl time.Duration, now func() time.Time) (*Service, error) {
	if orders == nil || carts == nil {
		return nil, fmt.Errorf("checkout: nil store")
	}
	if now == nil {
		return nil, fmt.Errorf("checkout: nil clock")
	}
	if ttl <= 0 {
		return nil, fmt.Errorf("checkout: reservation ttl must be positive, got %s", ttl)
	}
	return &Service{orders: orders, carts: carts, ttl: ttl, now: now}, nil
}

// CheckoutInput is a checkout request.
type CheckoutInput struct {
	IdempotencyKey string
	PaymentToken   string
	CartID         *string
	Items          []Line
}

// Checkout places an order for the actor, reserving its stock, idempotently by key.
func (s *Service) Checkout(ctx context.Context, a Actor, in CheckoutInput) (Order, bool, error) {
	if a.CustomerID == "" {
		return Order{}, false, ErrUnauthenticated
	}
	key := in.IdempotencyKey
	if strings.TrimSpace(key) == "" || len(key) > MaxIdempotencyKey || !printable(key) {
		return Order{}, false, Errorf(InvalidInput, []string{"input", "idempotencyKey"}, "idempotencyKey must be 1-%d printable characters", MaxIdempotencyKey)
	}
	if err := ValidatePaymentToken(in.PaymentToken); err != nil {
		return Order{}, false, err
	}
	p := PlaceOrder{
		OrderID:        s.Regions.NewOrderID(s.now()),
		CustomerID:     a.CustomerID,
		IdempotencyKey: key,
		PaymentToken:   in.PaymentToken,
	}
	switch {
	case in.CartID != nil && in.Items != nil:
		return Order{}, false, Errorf(InvalidInput, []string{"input"}, "give exactly one of cartId and items, not both")
	case in.CartID == nil && in.Items == nil:
		return Order{}, false, Errorf(InvalidInput, []string{"input"}, "give exactly one of cartId and items")
	case in.CartID != nil:
		id, ok := CanonicalID(*in.CartID)
		if !ok {
			return Order{}, false, Errorf(CartNotFound, []string{"input", "cartId"}, "cart not found")
		}
		p.CartID = id
	default:
		lines, err := NormalizeLines(in.Items, []string{"input", "items"})
		if err != nil {
			return Order{}, false, err
		}
		p.Lines = lines
	}
	p.RequestHash = requestHash(p)
	p.Now = s.now().UTC()
	p.ExpiresAt = p.Now.Add(s.ttl)
	p.Bounds = s.Limits.Bounds(p.Now)
	if s.CheckoutTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.CheckoutTimeout)
		defer cancel()
	}
	return s.orders.PlaceOrder(ctx, p)
}

// NormalizeLines validates lines and merges repeated SKUs, keeping first-seen order.
func NormalizeLines(items []Line, field []string) ([]Line, error) {
	if len(items) == 0 {
		return nil, Errorf(CartEmpty, field, "no items to check out")
	}
	if len(items) > MaxLines {
		return nil, Errorf(InvalidInput, field, "at most %d lines per order", MaxLines)
	}
	idx := map[string]int{}
	var out []Line
	for i, it := range items {
		f := append(append([]string{}, field...), strconv.Itoa(i))
		if !validSKU(it.SKU) {
			return nil, Errorf(UnknownSKU, append(f, "sku"), "unknown sku %q", truncate(it.SKU, 64))
		}
		if err := ValidateQuantity(it.Quantity, append(f, "quantity")); err != nil {
			return nil, err
		}
		if j, ok := idx[it.SKU]; ok {
			out[j].Quantity += it.Quantity
			if out[j].Quantity > MaxLineQuantity {
				return nil, Errorf(InvalidQuantity, append(f, "quantity"), "at most %d units of one sku", MaxLineQuantity)
			}
			continue
		}
		idx[it.SKU] = len(out)
		out = append(out, it)
	}
	return out, nil
}

// ValidateQuantity checks a line quantity.
func ValidateQuantity(q int, field []string) error {
	if q < 1 || q > MaxLineQuantity {
		return Errorf(InvalidQuantity, field, "quantity must be between 1 and %d", MaxLineQuantity)
	}
	return nil
}

var tokenRe = regexp.MustCompile(`^[A-Za-z0-9_]+$`)

// ValidatePaymentToken refuses anything but a provider token; a card-number-shaped value
// is refused without echoing it.
func ValidatePaymentToken(t string) error {
	f := []string{"input", "paymentToken"}
	switch {
	case cardnum.InToken(t):
		return Errorf(InvalidPaymentToken, f, "paymentToken must be a payment provider's token, never a card number")
	case t == "" || len(t) > MaxPaymentToken || !tokenRe.MatchString(t):
		return Errorf(InvalidPaymentToken, f, "paymentToken must be a payment provider's token such as tok_... or pm_...")
	}
	return nil
}

// CanonicalID returns an id (of an order, cart or webhook) in lower case, ok false unless
// it is a UUID written in its canonical 36-character form. uuid.Parse also takes
// "urn:uuid:...", "{...}" and 32 bare hex digits: those would reach the database as
// written (an error, or a match under another spelling than the one events carry), so
// they are not ids here.
func CanonicalID(id string) (string, bool) {
	if len(id) != 36 {
		return "", false
	}
	if _, err := uuid.Parse(id); err != nil {
		return "", false
	}
	return strings.ToLower(id), true
}

func validSKU(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r == '.' || r == '_' || r == ':' || r == '-' || r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r))) {
			return false
		}
	}
	return true
}

func printable(s string) bool {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// requestHash fingerprints what a checkout asked for, so a reused key with other input
// is told apart from a replay. Lines are hashed in SKU order.
func requestHash(p PlaceOrder) []byte {
	h := sha256.New()
	w := func(s string) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	w(p.PaymentToken)
	w(p.CartID)
	lines := append([]Line(nil), p.Lines...)
	sort.Slice(lines, func(i, j int) bool { return lines[i].SKU < lines[j].SKU })
	for _, l := range lines {
		w(l.SKU)
		w(strconv.Itoa(l.Quantity))
	}
	return h.Sum(nil)
}

// Order returns an order the actor may read, or nil.
func (s *Service) Order(ctx context.Context, a Actor, id string) (*Order, error) {
	if a.CustomerID == "" && !a.CanReadAny() {
		return nil, ErrUnauthenticated
	}
	id, ok := CanonicalID(id)
	if !ok {
		return nil, nil
	}
	o, err := s.orders.Order(ctx, id)
	if err != nil || o == nil {
		return nil, err
	}
	if o.CustomerID != a.CustomerID && !a.CanReadAny() {
		return nil, nil
	}
	return o, nil
}

// MyOrders pages through the actor's orders, newest first.
func (s *Service) MyOrders(ctx context.Context, a Actor, first int, after *PageCursor) (OrderPage, error) {
	if a.CustomerID == "" {
		return OrderPage{}, ErrUnauthenticated
	}
	return s.orders.CustomerOrders(ctx, a.CustomerID, first, after)
}

// CancelOrder cancels the actor's order: PENDING_PAYMENT releases its stock; PAID puts
// it back on hand and requests a refund. A shipped or finished order answers
// ORDER_NOT_CANCELLABLE.
func (s *Service) CancelOrder(ctx context.Context, a Actor, id string) (Order, error) {
	if a.CustomerID == "" && !a.Admin {
		return Order{}, ErrUnauthenticated
	}
	return s.transition(ctx, id, func(o *Order) (Change, error) {
		if o.CustomerID != a.CustomerID && !a.Admin {
			return Change{}, Errorf(NotFound, []string{"id"}, "order not found")
		}
		if !o.Cancellable() {
			return Change{}, Errorf(OrderNotCancellable, []string{"id"}, "an order in %s cannot be cancelled", o.Status)
		}
		return Change{To: StatusCancelled}, nil
	})
}

// ShipOrder marks a paid order shipped. Admin only.
func (s *Service) ShipOrder(ctx context.Context, a Actor, id, tracking string) (Order, error) {
	if err := RequireAdmin(a); err != nil {
		return Order{}, err
	}
	tracking = strings.TrimSpace(tracking)
	if tracking == "" || len(tracking) > MaxTrackingNumber || !printable(tracking) {
		return Order{}, Errorf(InvalidInput, []string{"trackingNumber"}, "trackingNumber must be 1-%d printable characters", MaxTrackingNumber)
	}
	return s.transition(ctx, id, func(o *Order) (Change, error) {
		if !CanTransition(o.Status, StatusShipped) {
			return Change{}, Errorf(InvalidTransition, []string{"id"}, "an order in %s cannot be shipped", o.Status)
		}
		return Change{To: StatusShipped, TrackingNumber: &tracking}, nil
	})
}

func (s *Service) transition(ctx context.Context, id string, decide func(o *Order) (Change, error)) (Order, error) {
	id, ok := CanonicalID(id)
	if !ok {
		return Order{}, Errorf(NotFound, []string{"id"}, "order not found")
	}
	return s.orders.Transition(ctx, id, decide)
}

// CreateCart makes an empty cart for the actor.
func (s *Service) CreateCart(ctx context.Context, a Actor) (Cart, error) {
	if a.CustomerID == "" {
		return Cart{}, ErrUnauthenticated
	}
	return s.carts.CreateCart(ctx, uuid.Must(uuid.NewV7()).String(), a.CustomerID, s.now().UTC())
}

// Cart returns the actor's cart, or nil when missing or another customer's.
func (s *Service) Cart(ctx context.Context, a Actor, id string) (*Cart, error) {
	if a.CustomerID == "" {
		return nil, ErrUnauthenticated
	}
	id, ok := CanonicalID(id)
	if !ok {
		return nil, nil
	}
	c, err := s.carts.Cart(ctx, id)
	if err != nil || c == nil {
		return nil, err
	}
	if c.CustomerID != a.CustomerID && !a.Admin {
		return nil, nil
	}
	return c, nil
}

// SetCartItem adds to (add) or sets a cart line; quantity 0 with add=false removes it.
func (s *Service) SetCartItem(ctx context.Context, a Actor, cartID, sku string, quantity int, add bool) (Cart, error) {
	if a.CustomerID == "" {
		return Cart{}, ErrUnauthenticated
	}
	cartID, ok := CanonicalID(cartID)
	if !ok {
		return Cart{}, Errorf(CartNotFound, []string{"cartId"}, "cart not found")
	}
	if !validSKU(sku) {
		return Cart{}, Errorf(UnknownSKU, []string{"sku"}, "unknown sku %q", truncate(sku, 64))
	}
	if add || quantity != 0 {
		if err := ValidateQuantity(quantity, []string{"quantity"}); err != nil {
			return Cart{}, err
		}
	}
	return s.carts.SetCartItem(ctx, cartID, a.CustomerID, sku, quantity, add, MaxLineQuantity)
}
