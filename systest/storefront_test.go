package systest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/checkout-backend/checkout/internal/testutil"
)

// TestStorefront_InChromium_ProductionBuild_TrustedDocumentsOnly runs the storefront
// starter (storefront/) as a shop ships it: its production build, whose every operation
// is in its trusted-documents manifest, served beside the binary started with
// PERSISTED_QUERIES=require and that manifest, and drives it in headless Chromium
// (Debian's package, through chromedp) as shoppers would:
//
//   - sign in, browse the catalog (a SKU selling out shows so on the open page), add to
//     the cart, check out; the order page shows the
//     order waiting for its payment (payments held), then PAID and, once the admin side
//     ships it, SHIPPED arrive on the open page, without a reload; the order is in "my
//     orders";
//   - a double click on "Pay" (and two clicks in one tick) makes one order;
//   - the last unit of a SKU sold to someone else while the shopper is on the checkout
//     page: the page says it sold out, and the cart is kept;
//   - the service behind an open order page is killed, the order shipped meanwhile by
//     another instance, the service started again: the page catches up;
//   - an operation that is not in the manifest is refused (PERSISTED_QUERY_NOT_IN_LIST).
//
// The admin side and the other buyers talk to a second instance (same database and
// broker, PERSISTED_QUERIES=allow), as a back office deployed apart would. It prints how
// long the catalog took to become interactive, and writes a screenshot of each page to
// STOREFRONT_SCREENSHOTS when that names a directory (docs/storefront holds the
// committed ones).
func TestStorefront_InChromium_ProductionBuild_TrustedDocumentsOnly(t *testing.T) {
	testutil.Slow(t)
	browserBin := chromiumPath(t)
	dist := buildStorefront(t)
	manifest := filepath.Join(dist, "persisted-query-manifest.json")

	db := testutil.NewDB(t)
	bin := testutil.BuildCheckout(t)
	dir := t.TempDir()
	env := []string{"DATABASE_URL=" + db.URL, "AMQP_PREFIX=" + testutil.DeploymentPrefix(t), "PAYMENT_PROVIDER=sandbox"}
	seed := exec.Command(bin, "seed")
	seed.Env = append(os.Environ(), append(env, "JWT_SECRET="+testutil.Secret)...)
	if out, err := seed.CombinedOutput(); err != nil {
		t.Fatalf("seed: %v\n%s", err, out)
	}
	shopAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	shopEnv := append([]string{"PERSISTED_QUERIES=require", "PERSISTED_QUERIES_MANIFEST=" + manifest}, env...)
	// The storefront's instance runs no workers, so that stopping the back office's
	// process (SIGSTOP) holds payments while the order page is open.
	shopArgs := []string{"--no-workers"}
	shop := launchServeAt(t, bin, dir, "storefront-api", shopAddr, shopArgs, shopEnv...)
	back := launchServe(t, bin, dir, "back-office", env...)
	shop.waitReady(t)
	back.waitReady(t)
	admin := testutil.Token(t, "sf-admin", "admin")
	gql(t, back.base, admin, `mutation { upsertProduct(input: {sku: "SF-LAST-ONE", name: "Last one standing", priceCents: 4200, currency: "USD"}) { sku } }`, nil)
	gql(t, back.base, admin, `mutation { setStock(sku: "SF-LAST-ONE", warehouse: "ams", onHand: 1) { available } }`, nil)
	gql(t, back.base, admin, `mutation { upsertProduct(input: {sku: "SF-LIVE", name: "Going fast", priceCents: 900, currency: "USD"}) { sku } }`, nil)
	gql(t, back.base, admin, `mutation { setStock(sku: "SF-LIVE", warehouse: "ams", onHand: 3) { available } }`, nil)

	// The storefront's origin: its files, and /graphql and /dev proxied to the API (as
	// a shop's CDN or the Vite dev server does), WebSockets included.
	apiURL, _ := url.Parse(shop.base)
	proxy := httputil.NewSingleHostReverseProxy(apiURL)
	keys := &checkoutKeys{}
	mux := http.NewServeMux()
	mux.Handle("/graphql", keys.record(proxy))
	mux.Handle("/dev/", proxy)
	mux.Handle("/", http.FileServer(http.Dir(dist)))
	site := httptest.NewServer(mux)
	t.Cleanup(site.Close)

	b := newBrowser(t, browserBin, site.URL, os.Getenv("STOREFRONT_SCREENSHOTS"))

	// Sign in; the catalog becomes interactive.
	b.do("open the storefront", chromedp.Navigate(site.URL+"/"))
	b.signIn("ann")
	b.do("load the catalog", chromedp.Reload(), chromedp.WaitVisible(catalogReady))
	interactive := eval[float64](b, "read the catalog's interactive mark",
		`(performance.getEntriesByName("catalog-interactive")[0] || {startTime: -1}).startTime`)
	t.Logf("catalog interactive %.0f ms after navigation start (production build, local service)", interactive)
	if interactive < 0 {
		t.Error(`the catalog never marked "catalog-interactive"`)
	}

	// Availability is live: the open catalog shows a SKU selling out, without a reload.
	gql(t, back.base, admin, `mutation { setStock(sku: "SF-LIVE", warehouse: "ams", onHand: 0) { available } }`, nil)
	b.do("the open catalog shows SF-LIVE sold out", chromedp.WaitVisible(chromedp.CSS(`[data-testid="product-SF-LIVE"] [data-testid=sold-out]`)))
	if !eval[bool](b, "read the sold-out button", `document.querySelector('[data-testid="product-SF-LIVE"] [data-testid=add-to-cart]').disabled`) {
		t.Error("a sold-out product can still be added to the cart")
	}
	b.shot("catalog")

	// Browse, add, check out, PAID live, shipped by the admin side, SHIPPED live.
	b.addToCart("TSHIRT-BLK-M")
	b.route("/cart", testID("cart-line-TSHIRT-BLK-M"))
	b.shot("cart")
	b.do("go to checkout", chromedp.Click(testID("go-checkout")), chromedp.WaitVisible(testID("pay")))
	b.shot("checkout")
	// Payments held (the only workers are the back office's, stopped) until the order
	// page shows the order waiting for its payment; then PAID arrives on the open page.
	if err := back.proc.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	b.do("pay", chromedp.Click(testID("pay")))
	orderID := b.orderPage()
	b.waitStatus(orderID, "PENDING_PAYMENT")
	b.watchStatus()
	b.shot("order-pending")
	if err := back.proc.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	b.waitStatus(orderID, "PAID")
	b.shot("order-paid")
	gql(t, back.base, admin, `mutation($id: ID!) { shipOrder(id: $id, trackingNumber: "1Z-SF-1") { userErrors { code } } }`, map[string]any{"id": orderID})
	b.waitStatus(orderID, "SHIPPED")
	if seen := b.seenStatuses(); seen != "PENDING_PAYMENT,PAID,SHIPPED" {
		t.Errorf("the open order page showed %q; want PENDING_PAYMENT,PAID,SHIPPED, without a reload", seen)
	}
	b.shot("order-shipped")
	b.route("/orders", testID("order-row-"+orderID))
	b.shot("my-orders")

	// A double click on Pay, then two clicks in one tick: one order each time.
	for i, click := range []chromedp.Action[chromedp.Void]{
		chromedp.DoubleClick(testID("pay")),
		chromedp.Evaluate[chromedp.Void](`(() => { const b = document.querySelector("[data-testid=pay]"); b.click(); b.click(); })()`),
	} {
		buyer := fmt.Sprintf("dee%d", i)
		b.signIn(buyer)
		b.addToCart("MUG-LOGO")
		b.route("/checkout", testID("pay"))
		keys.reset()
		b.do("pay twice", click)
		id := b.orderPage()
		b.waitStatus(id, "PAID")
		if n := testutil.Count(t, db.DB, `SELECT count(*) FROM orders WHERE customer_id = ?`, buyer); n != 1 {
			t.Errorf("%s: %d orders after two clicks on Pay, want 1", buyer, n)
		}
		// The service would refuse a second checkout of the cart anyway; the page's own
		// promise is one attempt, one idempotency key, whatever reaches the service.
		if sent, distinct := keys.seen(); distinct != 1 {
			t.Errorf("%s: two clicks on Pay sent %d checkouts with %d idempotency keys, want one key", buyer, sent, distinct)
		}
	}

	// The last unit sold to someone else while the shopper is on the checkout page.
	b.signIn("eve")
	b.addToCart("SF-LAST-ONE")
	b.route("/checkout", testID("pay"))
	other := gql(t, back.base, testutil.Token(t, "frank"), `mutation { checkout(input: {idempotencyKey: "frank-1", paymentToken: "tok_visa", items: [{sku: "SF-LAST-ONE", quantity: 1}]}) { order { id } userErrors { code } } }`, nil)
	if c, _ := other["checkout"].(map[string]any); c == nil || c["order"] == nil {
		t.Fatalf("frank's checkout of the last unit: %v", other)
	}
	b.do("pay for what just sold out", chromedp.Click(testID("pay")), chromedp.WaitVisible(testID("checkout-error")))
	code := eval[string](b, "read the error's code", `document.querySelector("[data-testid=checkout-error]").getAttribute("data-code")`)
	message := eval[string](b, "read the error", `document.querySelector("[data-testid=checkout-error]").textContent`)
	if code != "OUT_OF_STOCK" || message == "" || strings.Contains(message, "OUT_OF_STOCK") {
		t.Errorf("sold out mid-checkout: code %q, message %q; want OUT_OF_STOCK told as a sentence", code, message)
	}
	t.Logf("sold out mid-checkout, the page says: %s", message)
	b.shot("sold-out")
	b.route("/cart", testID("cart-line-SF-LAST-ONE"))
	b.do("the cart is kept across a reload", chromedp.Reload(), chromedp.WaitVisible(testID("cart-line-SF-LAST-ONE")))
	if n := testutil.Count(t, db.DB, `SELECT count(*) FROM orders WHERE customer_id = 'eve'`); n != 0 {
		t.Errorf("eve has %d orders after OUT_OF_STOCK, want 0", n)
	}

	// The service restarted under an open order page; the order ships meanwhile.
	b.signIn("gus")
	b.addToCart("CAP-RED")
	b.route("/checkout", testID("pay"))
	b.do("pay", chromedp.Click(testID("pay")))
	id := b.orderPage()
	b.waitStatus(id, "PAID")
	b.watchStatus()
	shop.proc.Kill()
	b.do("the page notices", chromedp.WaitVisible(chromedp.CSS(`[data-testid=connection][data-state=reconnecting]`)))
	gql(t, back.base, admin, `mutation($id: ID!) { shipOrder(id: $id, trackingNumber: "1Z-SF-2") { userErrors { code } } }`, map[string]any{"id": id})
	shop = launchServeAt(t, bin, dir, "storefront-api-again", shopAddr, shopArgs, shopEnv...)
	shop.waitReady(t)
	b.waitStatus(id, "SHIPPED")
	b.do("live again", chromedp.WaitVisible(chromedp.CSS(`[data-testid=connection][data-state=live]`)))
	t.Logf("statuses the order page showed across the restart: %s", b.seenStatuses())

	// Trusted documents only: the page's own operations ran; anything else is refused.
	refused := eval[string](b, "send an operation that is not in the manifest", `fetch("/graphql", {method: "POST",
		headers: {"Content-Type": "application/json"}, body: JSON.stringify({query: "{ products(first: 1) { edges { node { sku } } } }"})})
		.then(async r => r.status + " " + await r.text())`, chromedp.EvalAwaitPromise)
	if !strings.Contains(refused, "PERSISTED_QUERY_NOT_IN_LIST") {
		t.Errorf("an operation outside the manifest: %s; want PERSISTED_QUERY_NOT_IN_LIST", refused)
	}
	if errs := b.exceptions(); errs != "" {
		t.Errorf("uncaught exceptions in the page: %s", errs)
	}
}

// checkoutKeys records the idempotency keys of the checkouts the page sends.
type checkoutKeys struct {
	mu   sync.Mutex
	keys []string
}

func (k *checkoutKeys) record(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			var req struct {
				Variables struct {
					Input struct{ IdempotencyKey string } `json:"input"`
				} `json:"variables"`
			}
			if json.Unmarshal(body, &req) == nil && req.Variables.Input.IdempotencyKey != "" {
				k.mu.Lock()
				k.keys = append(k.keys, req.Variables.Input.IdempotencyKey)
				k.mu.Unlock()
			}
		}
		next.ServeHTTP(w, r)
	})
}

func (k *checkoutKeys) reset() { k.mu.Lock(); k.keys = nil; k.mu.Unlock() }

// seen says how many checkouts were sent since the reset, and with how many keys.
func (k *checkoutKeys) seen() (sent, distinct int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	set := map[string]bool{}
	for _, key := range k.keys {
		set[key] = true
	}
	return len(k.keys), len(set)
}

var catalogReady = chromedp.CSS(`[data-testid=catalog][data-ready=true]`)

// testID selects the element with that data-testid.
func testID(id string) chromedp.CSS { return chromedp.CSS(fmt.Sprintf(`[data-testid=%q]`, id)) }

// buildStorefront makes the storefront's production build (scripts/storefront.sh build:
// npm ci when node_modules is stale, the manifest, tsc, vite) and returns its dist.
func buildStorefront(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("npm"); err != nil {
		testutil.Required(t, "npm is not installed (Debian: apt-get install nodejs npm)")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(root, "scripts", "storefront.sh"), "build")
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("storefront build: %v\n%s", err, out)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.Contains(l, "storefront bundle:") {
			t.Log(strings.TrimSpace(l))
		}
	}
	t.Logf("storefront built in %s", time.Since(start).Round(100*time.Millisecond))
	return filepath.Join(root, "storefront", "dist")
}

// chromiumPath is Debian's chromium; the test is required under CI.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	testutil.Required(t, "chromium is not installed (scripts/services.sh --need-tools installs Debian's package)")
	return ""
}

// browser is one headless Chromium tab on the storefront.
type browser struct {
	t     *testing.T
	ctx   context.Context
	site  string
	shots string
	mu    sync.Mutex
	errs  []string
}

func newBrowser(t *testing.T, bin, site, shots string) *browser {
	t.Helper()
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(bin), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1200, 860),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true))
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	b := &browser{t: t, ctx: ctx, site: site, shots: shots}
	if err := chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*cdpruntime.EventExceptionThrown); ok {
			b.mu.Lock()
			d := e.ExceptionDetails
			msg := d.Text
			if d.Exception != nil && d.Exception.Description != "" {
				msg = d.Exception.Description
			}
			b.errs = append(b.errs, msg)
			b.mu.Unlock()
		}
	}); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return b
}

// do runs steps, failing the test (with what the page reads) after 30 s.
func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.fail(what, err)
	}
}

func (b *browser) fail(what string, err error) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	page, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`location.hash + "\n" + (document.body ? document.body.innerText.slice(0, 800) : "")`))
	b.t.Fatalf("%s: %v\nthe page (%s) reads:\n%s", what, err, b.site, page)
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](b *browser, what, expr string, opts ...chromedp.EvaluateOption) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, opts...))
	if err != nil {
		b.fail(what, err)
	}
	return v
}

// route moves the single-page app to a route (its hash, as its links do) and waits
// for an element of that page.
func (b *browser) route(path string, waitFor chromedp.CSS) {
	b.t.Helper()
	b.do("open #"+path, chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`location.hash = %q`, "#"+path)), chromedp.WaitVisible(waitFor))
}

// signIn signs in on the development sign-in page as name.
func (b *browser) signIn(name string) {
	b.t.Helper()
	b.route("/signin", chromedp.CSS(`[data-testid=signin-name], [data-testid=signout]`))
	b.do("sign in as "+name,
		chromedp.Evaluate[chromedp.Void](`(document.querySelector("[data-testid=signout]") || {click() {}}).click()`),
		chromedp.WaitVisible(testID("signin-name")),
		// Typing replaces what the field holds (a controlled input ignores a value set
		// from outside).
		chromedp.Evaluate[chromedp.Void](`document.querySelector("[data-testid=signin-name]").select()`),
		chromedp.SendKeys(testID("signin-name"), name),
		chromedp.Click(testID("signin-submit")),
		chromedp.Poll[chromedp.Void](fmt.Sprintf(`(document.querySelector("[data-testid=whoami]") || {textContent: ""}).textContent.includes(%q)`, name)))
}

// addToCart adds one unit of sku from the catalog and waits until the cart counts it.
func (b *browser) addToCart(sku string) {
	b.t.Helper()
	b.route("/", catalogReady)
	count := `(document.querySelector("[data-testid=cart-count]") || {textContent: "0"}).textContent.trim()`
	before := eval[string](b, "read the cart's count", count)
	b.do("add "+sku, chromedp.Click(chromedp.CSS(fmt.Sprintf(`[data-testid="product-%s"] [data-testid=add-to-cart]`, sku))),
		chromedp.Poll[chromedp.Void](fmt.Sprintf(`%s !== %q`, count, before)))
}

// orderPage waits until checkout has led to an order page and returns the order's id.
func (b *browser) orderPage() string {
	b.t.Helper()
	b.do("reach the order page", chromedp.Poll[chromedp.Void](`/^#\/orders\/[0-9a-f-]{36}$/.test(location.hash)`),
		chromedp.WaitVisible(testID("order-status")))
	hash := eval[string](b, "read the order's id", `location.hash`)
	return hash[strings.LastIndex(hash, "/")+1:]
}

// watchStatus records every status the order page shows from now on, so a test can
// tell a status that arrived live from one read at load.
func (b *browser) watchStatus() {
	b.t.Helper()
	b.do("watch the status", chromedp.Evaluate[chromedp.Void](`(() => {
		const status = () => { const el = document.querySelector("[data-testid=order-status]"); return el && el.getAttribute("data-status"); };
		window.__seen = [status()];
		new MutationObserver(() => {
			const s = status();
			if (s && window.__seen[window.__seen.length - 1] !== s) window.__seen.push(s);
		}).observe(document.body, {subtree: true, attributes: true, childList: true});
	})()`))
}

func (b *browser) seenStatuses() string {
	b.t.Helper()
	return eval[string](b, "read the statuses seen", `(window.__seen || []).join(",")`)
}

// waitStatus waits until the open order page of id shows status.
func (b *browser) waitStatus(id, status string) {
	b.t.Helper()
	b.do(fmt.Sprintf("order %s shows %s", id, status),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`[data-testid=order-status][data-status=%s]`, status))))
}

// shot writes a full-page PNG of the current page to the screenshot directory, if any.
func (b *browser) shot(name string) {
	b.t.Helper()
	if b.shots == "" {
		return
	}
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.fail("screenshot "+name, err)
	}
	if err := os.MkdirAll(b.shots, 0o755); err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(b.shots, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

func (b *browser) exceptions() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.errs, "; ")
}
