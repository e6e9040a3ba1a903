package checkout

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Regions are the regions a deployment sells from (REGIONS, in an order every region's
// configuration lists the same way) and the one this process runs in (REGION). An
// order id carries its home region: in a deployment of several regions, the service
// makes order ids as UUIDv7 does (a millisecond timestamp first, so ids still sort by
// time) with the version set to 8 (a layout of our own, RFC 9562) and the region's
// place in Names (1 to 255) in byte 9. A version 7 id comes from before regions were
// set and lives in the first region listed, the one that ran alone first. The zero
// Regions is a deployment of one region: plain UUIDv7 ids, every order local.
type Regions struct {
	Names []string
	Local string
}

// MaxRegions is how many regions an order id can tell apart.
const MaxRegions = 255

var regionName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

// NewRegions checks a deployment's regions: local is one of names, each a lowercase
// name of at most 32 letters, digits and hyphens, none twice. No names at all is one
// region (local may then be set alone, or not).
func NewRegions(names []string, local string) (Regions, error) {
	if len(names) == 0 {
		return Regions{Local: local}, nil
	}
	if len(names) > MaxRegions {
		return Regions{}, fmt.Errorf("checkout: at most %d regions, got %d", MaxRegions, len(names))
	}
	for i, n := range names {
		if !regionName.MatchString(n) {
			return Regions{}, fmt.Errorf("checkout: region %q: lowercase letters, digits and hyphens, at most 32", n)
		}
		if slices.Contains(names[:i], n) {
			return Regions{}, fmt.Errorf("checkout: region %q listed twice", n)
		}
	}
	if !slices.Contains(names, local) {
		return Regions{}, fmt.Errorf("checkout: this process's region %q is not among %s", local, strings.Join(names, ","))
	}
	return Regions{Names: slices.Clone(names), Local: local}, nil
}

// Peers are the regions of the deployment other than this one, in REGIONS order.
func (r Regions) Peers() []string {
	return slices.DeleteFunc(slices.Clone(r.Names), func(n string) bool { return n == r.Local })
}

// NewOrderID makes the id of an order placed here, at now.
func (r Regions) NewOrderID(now time.Time) string {
	id := uuid.Must(uuid.NewV7())
	if len(r.Names) == 0 {
		return id.String()
	}
	// UUIDv7's 48-bit millisecond timestamp, at now rather than the package's clock.
	ms := uint64(now.UnixMilli())
	for i := 0; i < 6; i++ {
		id[i] = byte(ms >> (40 - 8*i))
	}
	id[6] = 0x80 | id[6]&0x0f // version 8
	id[9] = byte(slices.Index(r.Names, r.Local) + 1)
	return id.String()
}

// HomeOf tells the region an order id lives in. ok is false for an id that is not a
// canonical UUID or names no region of the deployment.
func (r Regions) HomeOf(id string) (home string, ok bool) {
	if _, ok := CanonicalID(id); !ok {
		return "", false
	}
	u := uuid.MustParse(id)
	if len(r.Names) == 0 {
		return r.Local, true
	}
	switch u.Version() {
	case 8:
		i := int(u[9])
		if i < 1 || i > len(r.Names) {
			return "", false
		}
		return r.Names[i-1], true
	default:
		return r.Names[0], true
	}
}

// IsLocal reports whether the order id lives in this region.
func (r Regions) IsLocal(id string) bool {
	home, ok := r.HomeOf(id)
	return ok && home == r.Local
}

// RemoteOrders reads and changes orders that live in another region, at their home:
// the operation goes to the home region's API with the caller's own token, so the home
// region authorizes it as it would a request of its own. A region that cannot be
// reached answers ErrRegionUnavailable; a refusal of the home region (an Error) comes
// back as it was.
type RemoteOrders interface {
	Order(ctx context.Context, home, token, id string) (*Order, error)
	CancelOrder(ctx context.Context, home, token, id string) (Order, error)
	ShipOrder(ctx context.Context, home, token, id, tracking string) (Order, error)
	// MyOrders is the caller's first orders at home after the cursor (newest first),
	// and whether it has more.
	MyOrders(ctx context.Context, home, token string, first int, after *string) ([]Order, bool, error)
}

// ErrRegionUnavailable means an order's home region cannot be reached now: the client
// retries later (nothing was changed here).
var ErrRegionUnavailable = errors.New("the order's home region cannot be reached now")

// ForwardedHeader marks a request that one region's API sent to another on a caller's
// behalf (its value names the sender). A region that would forward such a request again
// (regions configured differently) refuses instead, so nothing goes round in circles.
const ForwardedHeader = "X-Checkout-Forwarded-From"
