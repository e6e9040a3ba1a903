package testutil

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/google/uuid"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/checkout-backend/checkout/graph"
	"github.com/checkout-backend/checkout/graph/gqlhttp"
	"github.com/checkout-backend/checkout/internal/catalog"
	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/platform/auth"
	"github.com/checkout-backend/checkout/internal/platform/httpx"
	clog "github.com/checkout-backend/checkout/internal/platform/log"
	"github.com/checkout-backend/checkout/internal/platform/telemetry"
	"github.com/checkout-backend/checkout/internal/store"
	"github.com/checkout-backend/checkout/internal/webhook"
)

// Secret signs test tokens.
const Secret = "test-secret-0123456789abcdef0123456789"

// Token signs a token for sub with roles. From the test's goroutine only: make the
// tokens of concurrent clients before starting them.
func Token(t testing.TB, sub string, roles ...string) string {
	t.Helper()
	tok, err := auth.Sign(Secret, sub, roles, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// API is the GraphQL handler over a test database.
type API struct {
	DB       *DB
	Handler  http.Handler
	Resolver *graph.Resolver
	Orders   *store.Orders
	Catalog  *store.Catalog
	Service  *checkout.Service
}

// APIOptions tune NewAPI.
type APIOptions struct {
	// Overload, when set, sheds load as serve does.
	Overload func(http.Handler) http.Handler
	// StrictWebhookURLs refuses loopback and private webhook URLs (production policy).
	StrictWebhookURLs bool
	TTL               time.Duration // 0: 10 minutes
	Feed              checkout.StatusFeed
	// HTTP configures the GraphQL transport (limits, persisted queries, CORS); zero: defaults.
	HTTP gqlhttp.Options
	// NoIntrospection turns introspection off, as in production.
	NoIntrospection bool
	// Log, when set, also receives the API's JSON log lines.
	Log io.Writer
	// Now is the clock of every part (default time.Now: a test's setting, defaulted
	// here; the components themselves take no nil clock).
	Now func() time.Time
	// Strategy is the reservation strategy (default lock).
	Strategy store.Strategy
	// OnCommit, when set, is told every committed order change (metrics).
	OnCommit func(checkout.Order)
	// Notify, when set, wakes the relays after a commit that wrote events.
	Notify func()
	// Sockets configure the WebSocket connections (caps, timeouts); zero: defaults.
	Sockets gqlhttp.SocketOptions
	// Regions is the deployment's regions and this API's (zero: one region); Remote
	// forwards operations on the others' orders.
	Regions checkout.Regions
	Remote  checkout.RemoteOrders
	// Webhooks is the endpoints' store (default: a new one on db, binding nothing).
	Webhooks *store.Webhooks
}

// RedisURL is the Redis server tests use: REDIS_URL, else redis://127.0.0.1:6379/0.
func RedisURL() string {
	if u := os.Getenv("REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

// NewAPI builds the API (as serve does) over db.
func NewAPI(t testing.TB, db *DB, opts ...APIOptions) *API {
	t.Helper()
	opt := APIOptions{TTL: 10 * time.Minute}
	if len(opts) > 0 {
		opt = opts[0]
	}
	if opt.TTL == 0 {
		opt.TTL = 10 * time.Minute
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	orders := store.NewOrders(db.DB, opt.Now, store.OrdersOptions{Strategy: opt.Strategy, OnCommit: opt.OnCommit, Notify: opt.Notify})
	t.Cleanup(orders.Close)
	svc, err := checkout.NewService(orders, store.NewCarts(db.DB, opt.Now), opt.TTL, opt.Now)
	if err != nil {
		t.Fatal(err)
	}
	svc.Regions = opt.Regions
	cat := store.NewCatalog(db.DB, opt.Now)
	if opt.Webhooks == nil {
		opt.Webhooks = store.NewWebhooks(db.DB, opt.Now)
	}
	res := &graph.Resolver{Now: opt.Now, Service: svc, Catalog: catalog.NewService(cat), Orders: orders, Feed: opt.Feed,
		WebhookService: webhook.NewService(opt.Webhooks, webhook.Policy{AllowPrivate: !opt.StrictWebhookURLs},
			func() string { return uuid.Must(uuid.NewV7()).String() }), Regions: opt.Regions, Remote: opt.Remote}
	var logTo io.Writer = testWriter{t}
	if opt.Log != nil {
		logTo = io.MultiWriter(logTo, opt.Log)
	}
	logger := clog.New(logTo, -4)
	h := telemetry.Handler(httpx.RequestID(httpx.Log(logger, gqlhttp.InternalError, graph.Handler(res, graph.HandlerOptions{Logger: logger, Verifier: auth.NewVerifier(Secret),
		Introspection: !opt.NoIntrospection, HTTP: opt.HTTP, Overload: opt.Overload, Sockets: opt.Sockets}))))
	return &API{DB: db, Handler: h, Resolver: res, Orders: orders, Catalog: cat, Service: svc}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	if testing.Verbose() {
		w.t.Log(string(bytes.TrimRight(p, "\n")))
	}
	RunLog(p)
	return len(p), nil
}

var (
	runLogOnce sync.Once
	runLogMu   sync.Mutex
	runLog     *os.File
)

// RunLog appends service log lines to the file named by CHECKOUT_TEST_LOG, so the log of
// a whole test run can be checked for secrets afterwards (make test runs cmd/logscan).
func RunLog(p []byte) {
	runLogOnce.Do(func() {
		if name := os.Getenv("CHECKOUT_TEST_LOG"); name != "" {
			runLog, _ = os.OpenFile(name, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
		}
	})
	if runLog == nil {
		return
	}
	runLogMu.Lock()
	defer runLogMu.Unlock()
	runLog.Write(p)
}

// Response is a GraphQL response.
type Response struct {
	Status int
	Data   json.RawMessage `json:"data"`
	Errors []struct {
		Message    string         `json:"message"`
		Path       []any          `json:"path"`
		Extensions map[string]any `json:"extensions"`
	} `json:"errors"`
}

// ErrorCode is the extensions.code of the first error, or "".
func (r *Response) ErrorCode() string {
	if len(r.Errors) == 0 {
		return ""
	}
	c, _ := r.Errors[0].Extensions["code"].(string)
	return c
}

// Do posts a GraphQL request with token (may be "") and decodes the response; it fails
// the test when the answer is not a GraphQL response. From the test's goroutine only:
// other goroutines call Post.
func (a *API) Do(t testing.TB, token, query string, vars map[string]any) *Response {
	t.Helper()
	r, err := a.Post(token, query, vars)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Post is Do returning an error instead of failing the test: safe from any goroutine.
func (a *API) Post(token, query string, vars map[string]any) (*Response, error) {
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req := httptest.NewRequest(http.MethodPost, "/graphql", bytes.NewReader(body)).WithContext(context.Background())
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	a.Handler.ServeHTTP(rec, req)
	var r Response
	if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
		return nil, fmt.Errorf("decode response (status %d): %v: %s", rec.Code, err, rec.Body.String())
	}
	r.Status = rec.Code
	return &r, nil
}

// Product creates a product with stock per warehouse.
func (a *API) Product(t testing.TB, sku string, priceCents int64, stock map[string]int) {
	t.Helper()
	ctx := context.Background()
	if _, err := a.Catalog.UpsertProduct(ctx, catalog.Product{SKU: sku, Name: "Product " + sku, PriceCents: priceCents, Currency: "USD"}); err != nil {
		t.Fatal(err)
	}
	for wh, n := range stock {
		if _, err := a.Catalog.SetStock(ctx, sku, wh, n); err != nil {
			t.Fatal(err)
		}
	}
}

// Stock returns on_hand and reserved of a SKU summed over warehouses, as the API shows
// them (inventory_levels: pending sales folded in).
func (a *API) Stock(t testing.TB, sku string) (onHand, reserved int) {
	t.Helper()
	err := a.DB.NewRaw("SELECT COALESCE(sum(on_hand),0)::int, COALESCE(sum(reserved),0)::int FROM inventory_levels WHERE sku = ?", sku).Scan(context.Background(), &onHand, &reserved)
	if err != nil {
		t.Fatal(err)
	}
	return
}

// Count runs a SELECT count(*) style query returning one int.
func (a *API) Count(t testing.TB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := a.DB.NewRaw(query, args...).Scan(context.Background(), &n); err != nil {
		t.Fatal(err)
	}
	return n
}
