package graph_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/checkout-backend/checkout/graph/gqlhttp"
	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/region"
	"github.com/checkout-backend/checkout/internal/testutil"
)

// TestRegions_AnOrderPlacedInARegionCarriesItInItsID: with REGIONS=eu,us, an order
// checked out in us gets an id that every region reads as living in us, and us serves
// it as its own (read back, stock reserved in its database).
func TestRegions_AnOrderPlacedInARegionCarriesItInItsID(t *testing.T) {
	t.Parallel()
	regions, err := checkout.NewRegions([]string{"eu", "us"}, "us")
	if err != nil {
		t.Fatal(err)
	}
	api := testutil.NewAPI(t, testutil.NewDB(t), testutil.APIOptions{Regions: regions})
	api.Product(t, "TEE", 1500, map[string]int{"nyc": 5})
	token := testutil.Token(t, "ann")
	r, _ := doCheckout(t, api, token, map[string]any{"idempotencyKey": "k1", "paymentToken": "tok_visa",
		"items": []map[string]any{{"sku": "TEE", "quantity": 2}}})
	o := r.Checkout.Order
	if o == nil {
		t.Fatalf("checkout: %+v", r.Checkout.UserErrors)
	}
	if v := uuid.MustParse(o.ID).Version(); v != 8 {
		t.Errorf("order id %s is version %d, want 8 (it carries its region)", o.ID, v)
	}
	eu, _ := checkout.NewRegions([]string{"eu", "us"}, "eu")
	if home, ok := eu.HomeOf(o.ID); !ok || home != "us" {
		t.Errorf("eu reads the home of %s as %q (%v), want us", o.ID, home, ok)
	}
	got := api.Do(t, token, `query($id: ID!) { order(id: $id) { id status } }`, map[string]any{"id": o.ID})
	if got.ErrorCode() != "" || !strings.Contains(string(got.Data), o.ID) {
		t.Errorf("us reads its own order back: %s %s", got.Data, got.ErrorCode())
	}
	if _, reserved := api.Stock(t, "TEE"); reserved != 2 {
		t.Errorf("%d units reserved in us, want 2", reserved)
	}
}

// TestRegions_AnotherRegionsOrder_ReadCancelledAtItsHome_RegionUnavailableWhileUnreachable:
// two regions, each an API on a database of its own. An order placed in eu is read and
// cancelled through us, which forwards both to eu with the caller's token: eu
// authorizes (another customer reads nothing) and eu's database has the cancellation.
// A request that eu forwarded would not be forwarded again; with eu unreachable, us
// answers REGION_UNAVAILABLE with retryAfter, and changes nothing.
func TestRegions_AnotherRegionsOrder_ReadFollowedCancelledAtItsHome_ListedEverywhere_RegionUnavailableWhileUnreachable(t *testing.T) {
	t.Parallel()
	names := []string{"eu", "us"}
	apis := map[string]*testutil.API{}
	urls := map[string]string{}
	servers := map[string]*httptest.Server{}
	feeds := map[string]*fakeFeed{}
	for _, name := range names {
		regions, err := checkout.NewRegions(names, name)
		if err != nil {
			t.Fatal(err)
		}
		feeds[name] = &fakeFeed{}
		api := testutil.NewAPI(t, testutil.NewDB(t), testutil.APIOptions{Regions: regions, Feed: feeds[name],
			Remote: &region.Forwarder{Local: name, URLs: urls}}) // urls is filled as the servers start
		apis[name] = api
		servers[name] = httptest.NewServer(api.Handler)
		t.Cleanup(servers[name].Close)
		urls[name] = servers[name].URL
	}
	eu, us := apis["eu"], apis["us"]
	eu.Product(t, "TEE", 1500, map[string]int{"ams": 5})
	ann := testutil.Token(t, "ann")
	r, _ := doCheckout(t, eu, ann, map[string]any{"idempotencyKey": "k1", "paymentToken": "pm_card_threeDSecure2Required",
		"items": []map[string]any{{"sku": "TEE", "quantity": 2}}})
	if r.Checkout.Order == nil {
		t.Fatalf("checkout in eu: %+v", r.Checkout.UserErrors)
	}
	id := r.Checkout.Order.ID
	read := `query($id: ID!) { order(id: $id) { id status totalCents items { sku quantity } } }`

	got := us.Do(t, ann, read, map[string]any{"id": id})
	if got.ErrorCode() != "" || !strings.Contains(string(got.Data), id) || !strings.Contains(string(got.Data), `"PENDING_PAYMENT"`) ||
		!strings.Contains(string(got.Data), `"totalCents":3000`) {
		t.Fatalf("ann reads her eu order through us: %s %s", got.Data, got.ErrorCode())
	}
	if got := us.Do(t, testutil.Token(t, "bob"), read, map[string]any{"id": id}); string(got.Data) != `{"order":null}` {
		t.Errorf("bob reads ann's eu order through us: %s %s", got.Data, got.ErrorCode())
	}
	if got := us.Do(t, "", read, map[string]any{"id": id}); got.ErrorCode() != gqlhttp.CodeUnauthenticated {
		t.Errorf("nobody signed in reads an eu order through us: %s %s, want UNAUTHENTICATED", got.Data, got.ErrorCode())
	}

	// Following ann's eu order from us: the first state is read from eu; the changes come
	// through us's feed (from eu's events, which eu's shovel delivers to us's exchange of
	// other regions' events). Bob cannot follow it.
	ctx, stop := context.WithTimeout(context.Background(), 20*time.Second)
	defer stop()
	follow := `subscription($id: ID!) { orderStatusChanged(orderId: $id) { id status } }`
	for who, tok := range map[string]string{"ann": ann, "bob": testutil.Token(t, "bob")} {
		c, code, err := testutil.DialWS(ctx, servers["us"].URL+"/graphql", tok)
		if err != nil {
			t.Fatalf("dial us: close %d: %v", code, err)
		}
		defer c.Close()
		if err := c.Subscribe(ctx, "1", follow, map[string]any{"id": id}); err != nil {
			t.Fatal(err)
		}
		first := until(ctx, t, c, "1", func(r opResult) bool { return len(r.data) > 0 || len(r.codes) > 0 })
		if who == "bob" {
			if len(first.data) > 0 || len(first.codes) == 0 {
				t.Errorf("bob follows ann's eu order through us: %s %v", first.data, first.codes)
			}
			continue
		}
		if len(first.data) == 0 || !strings.Contains(string(first.data[0]), `"PENDING_PAYMENT"`) {
			t.Fatalf("ann follows her eu order through us: first %s %v, want PENDING_PAYMENT read from eu", first.data, first.codes)
		}
		feeds["us"].Publish(checkout.Order{ID: id, Status: checkout.StatusPaid, Sequence: 1 << 20})
		next := until(ctx, t, c, "1", func(r opResult) bool { return len(r.data) > 0 || len(r.codes) > 0 })
		if len(next.data) == 0 || !strings.Contains(string(next.data[0]), `"PAID"`) {
			t.Errorf("ann's eu order paid, as us's feed heard it: %s %v, want PAID", next.data, next.codes)
		}
	}

	cancel := `mutation($id: ID!) { cancelOrder(id: $id) { order { id status } userErrors { code } } }`
	if got := us.Do(t, ann, cancel, map[string]any{"id": id}); !strings.Contains(string(got.Data), `"CANCELLED"`) {
		t.Fatalf("ann cancels her eu order through us: %s %s", got.Data, got.ErrorCode())
	}
	if n := eu.Count(t, `SELECT count(*)::int FROM orders WHERE id = ? AND status = 'CANCELLED'`, id); n != 1 {
		t.Errorf("eu's database: %d cancelled orders %s, want 1", n, id)
	}
	if got := us.Do(t, ann, cancel, map[string]any{"id": id}); !strings.Contains(string(got.Data), `"ORDER_NOT_CANCELLABLE"`) {
		t.Errorf("cancelling again through us: %s %s, want eu's ORDER_NOT_CANCELLABLE", got.Data, got.ErrorCode())
	}

	// A request eu forwarded to us for an eu order: the regions disagree; no loop.
	body := `{"query":"query($id: ID!) { order(id: $id) { id } }","variables":{"id":"` + id + `"}}`
	req := httptest.NewRequest(http.MethodPost, "/graphql", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+ann)
	req.Header.Set(checkout.ForwardedHeader, "eu")
	rec := httptest.NewRecorder()
	us.Handler.ServeHTTP(rec, req)
	if !strings.Contains(rec.Body.String(), gqlhttp.CodeRegionUnavailable) {
		t.Errorf("a forwarded request forwarded again: %d %s", rec.Code, rec.Body)
	}

	// Ann's orders, asked of either region: hers in both, newest first, paged across
	// regions with one cursor.
	us.Product(t, "MUG", 500, map[string]int{"nyc": 5})
	r2, _ := doCheckout(t, us, ann, map[string]any{"idempotencyKey": "k2", "paymentToken": "pm_card_threeDSecure2Required",
		"items": []map[string]any{{"sku": "MUG", "quantity": 1}}})
	if r2.Checkout.Order == nil {
		t.Fatalf("checkout in us: %+v", r2.Checkout.UserErrors)
	}
	usID := r2.Checkout.Order.ID
	mine := `query($n: Int, $a: String) { myOrders(first: $n, after: $a) { edges { cursor node { id } } pageInfo { hasNextPage } } }`
	type page struct {
		MyOrders struct {
			Edges []struct {
				Cursor string
				Node   struct{ ID string }
			}
			PageInfo struct{ HasNextPage bool }
		}
	}
	list := func(api *testutil.API, n int, after any) (page, *testutil.Response) {
		t.Helper()
		got := api.Do(t, ann, mine, map[string]any{"n": n, "a": after})
		var p page
		if err := json.Unmarshal(got.Data, &p); err != nil {
			t.Fatalf("myOrders: %s: %v", got.Data, err)
		}
		return p, got
	}
	for name, api := range map[string]*testutil.API{"eu": eu, "us": us} {
		p, got := list(api, 10, nil)
		if got.ErrorCode() != "" || len(p.MyOrders.Edges) != 2 || p.MyOrders.Edges[0].Node.ID != usID || p.MyOrders.Edges[1].Node.ID != id {
			t.Errorf("ann's orders asked of %s: %s %s, want the us one then the eu one", name, got.Data, got.ErrorCode())
		}
	}
	first, _ := list(us, 1, nil)
	if len(first.MyOrders.Edges) != 1 || first.MyOrders.Edges[0].Node.ID != usID || !first.MyOrders.PageInfo.HasNextPage {
		t.Fatalf("first page of one: %+v", first)
	}
	second, _ := list(us, 1, first.MyOrders.Edges[0].Cursor)
	if len(second.MyOrders.Edges) != 1 || second.MyOrders.Edges[0].Node.ID != id || second.MyOrders.PageInfo.HasNextPage {
		t.Errorf("second page of one: %+v, want the eu order and no more", second)
	}
	if p, _ := list(us, 10, nil); len(p.MyOrders.Edges) != 2 {
		t.Fatalf("before eu went away: %+v", p)
	}

	servers["eu"].Close()
	if p, got := list(us, 10, nil); len(p.MyOrders.Edges) != 1 || p.MyOrders.Edges[0].Node.ID != usID ||
		got.ErrorCode() != gqlhttp.CodeRegionUnavailable {
		t.Errorf("ann's orders while eu is unreachable: %s %s, want her us order and %s", got.Data, got.ErrorCode(), gqlhttp.CodeRegionUnavailable)
	}
	got = us.Do(t, ann, read, map[string]any{"id": id})
	if got.ErrorCode() != gqlhttp.CodeRegionUnavailable || len(got.Errors) == 0 || got.Errors[0].Extensions["retryAfter"] != float64(1) {
		t.Errorf("eu unreachable: %s, errors %+v; want %s with retryAfter", got.Data, got.Errors, gqlhttp.CodeRegionUnavailable)
	}
}
