package systest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/event"
	"github.com/checkout-backend/checkout/internal/node"
	"github.com/checkout-backend/checkout/internal/testutil"
)

// serveInstance is a checkout binary started by launchServe.
type serveInstance struct {
	name, base, log string
	proc            *node.Process
}

// launchServe starts the checkout binary (serve -migrate) with env, killed at cleanup;
// waitReady waits for it.
func launchServe(t *testing.T, bin, dir, name string, env ...string) *serveInstance {
	t.Helper()
	return launchServeAt(t, bin, dir, name, fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t)), nil, env...)
}

// launchServeAt is launchServe on a given address (an instance started again keeps its
// address, so its clients find it), with more arguments of serve (--no-workers, say).
func launchServeAt(t *testing.T, bin, dir, name, addr string, args []string, env ...string) *serveInstance {
	t.Helper()
	in := &serveInstance{name: name, base: "http://" + addr, log: filepath.Join(dir, name+".log")}
	cmd := exec.Command(bin, append([]string{"serve", "-migrate"}, args...)...)
	cmd.Env = append(append(os.Environ(), "HTTP_ADDR="+addr, "JWT_SECRET="+testutil.Secret, "REDIS_URL=", "APP_ENV=development"), env...)
	var err error
	if in.proc, err = node.Start(cmd, node.StartOptions{Log: in.log}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(in.proc.Kill)
	return in
}

// waitReady waits until the instance's /readyz answers 200, failing t if it exits.
func (in *serveInstance) waitReady(t *testing.T) {
	t.Helper()
	testutil.Eventually(t, 90*time.Second, in.name+" ready", func() bool {
		if !in.proc.Alive() {
			t.Fatalf("%s exited: %s", in.name, node.LogTail(in.log, 5))
		}
		resp, err := http.Get(in.base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// TestPgBouncer_TenInstancesOnAServerOf100Connections_FlashSale_NobodyRefused runs ten
// instances of the binary, at their default pool sizes (up to 45 connections each, 450
// in all), through one PgBouncer in transaction pooling mode (40 server connections) to
// a PostgreSQL whose max_connections is 100. All ten start at once and migrate the
// empty database together (the migration lock is transaction-scoped, so it holds
// through the pooler). One instance has DATABASE_SESSION_URL (its relay LISTENs on a
// direct connection); the others have none (woken by their own commits, polling for
// the rest). Then a flash sale: 300 buyers spread over the ten instances for 100 units
// of one SKU. Every buyer gets an order or OUT_OF_STOCK, never an error; exactly 100
// orders, each PAID through the relay, RabbitMQ and the payment worker, and each
// order's order.placed and order.paid delivered once to a partner's webhook;
// PostgreSQL never had more than the pooler's connections from them.
func TestPgBouncer_TenInstancesOnAServerOf100Connections_FlashSale_NobodyRefused(t *testing.T) {
	testutil.Slow(t) // a private PostgreSQL node and ten service processes
	t.Parallel()
	ctx := context.Background()
	pg := node.StartPostgres(t, node.PostgresOptions{Settings: map[string]string{"max_connections": "100"}})
	admin, err := pgx.Connect(ctx, pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE shop"); err != nil {
		t.Fatal(err)
	}
	shop, err := pgx.Connect(ctx, pg.URLFor("shop"))
	if err != nil {
		t.Fatal(err)
	}
	defer shop.Close(ctx)
	const serverConns = 40
	pool := node.StartPgBouncer(t, node.PgBouncerOptions{Server: pg.HostPort(), PoolSize: serverConns, ConnectQuery: node.PooledSessionLimits})
	bin := testutil.BuildCheckout(t)
	prefix := testutil.DeploymentPrefix(t)
	dir := t.TempDir()
	const instances = 10
	bases := make([]string, instances)
	var started []*serveInstance
	for i := range instances {
		env := []string{"DATABASE_URL=" + pool.URLFor("shop"), "DATABASE_POOL_MODE=transaction",
			"AMQP_URL=" + testutil.AMQPURL(), "AMQP_PREFIX=" + prefix, "WORKER_RETRY_DELAYS=1s", "WEBHOOK_ALLOW_PRIVATE=true"}
		if i == 0 {
			env = append(env, "DATABASE_SESSION_URL="+pg.URLFor("shop"))
		}
		started = append(started, launchServe(t, bin, dir, fmt.Sprintf("instance%d", i), env...))
	}
	for i, in := range started {
		in.waitReady(t)
		bases[i] = in.base
	}
	var wg sync.WaitGroup

	const stock, buyers = 100, 300
	adminTok := testutil.Token(t, "admin", "admin")
	gql(t, bases[0], adminTok, `mutation { upsertProduct(input: {sku: "HOT", name: "Hot", priceCents: 900, currency: "USD"}) { sku } }`, nil)
	gql(t, bases[0], adminTok, fmt.Sprintf(`mutation { setStock(sku: "HOT", warehouse: "w", onHand: %d) { onHand } }`, stock), nil)
	// A partner subscribed to every event: each must reach it once, whichever instance
	// fanned it out and delivered it.
	var mu sync.Mutex
	delivered := map[string]int{} // type/order -> deliveries
	partner := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev struct {
			Type string
			Data struct{ Order struct{ ID string } }
		}
		json.NewDecoder(r.Body).Decode(&ev)
		mu.Lock()
		delivered[ev.Type+"/"+ev.Data.Order.ID]++
		mu.Unlock()
	}))
	defer partner.Close()
	gql(t, bases[1], adminTok, `mutation($u: String!) { registerWebhook(input: {url: $u, events: ["*"]}) { secret } }`, map[string]any{"u": partner.URL})

	// Sample the server's connections from the service (pooled ones) during the sale.
	peak := 0
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			var n int
			if err := shop.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE datname = 'shop'").Scan(&n); err == nil && n > peak {
				peak = n
			}
			select {
			case <-stopSampling:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	type answer struct {
		order, code string
		err         error
	}
	answers := make([]answer, buyers)
	saleStart := time.Now()
	for b := range buyers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body, _ := json.Marshal(map[string]any{"query": checkoutMutation, "variables": map[string]any{"in": map[string]any{
				"idempotencyKey": fmt.Sprintf("k%d", b), "paymentToken": "tok_visa",
				"items": []any{map[string]any{"sku": "HOT", "quantity": 1}}}}})
			req, _ := http.NewRequest(http.MethodPost, bases[b%instances]+"/graphql", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+testutil.Token(t, fmt.Sprintf("buyer%d", b)))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				answers[b].err = err
				return
			}
			defer resp.Body.Close()
			var r struct {
				Data struct {
					Checkout *struct {
						Order      *struct{ ID string }
						UserErrors []struct{ Code string }
					}
				}
				Errors []json.RawMessage
			}
			if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || resp.StatusCode != 200 || len(r.Errors) > 0 || r.Data.Checkout == nil {
				answers[b].err = fmt.Errorf("status %d, errors %s, decode %v", resp.StatusCode, r.Errors, err)
				return
			}
			switch c := r.Data.Checkout; {
			case c.Order != nil:
				answers[b].order = c.Order.ID
			case len(c.UserErrors) > 0:
				answers[b].code = c.UserErrors[0].Code
			}
		}()
	}
	wg.Wait()
	saleTook := time.Since(saleStart)
	close(stopSampling)
	<-sampled

	var orders []string
	for b, a := range answers {
		switch {
		case a.err != nil:
			t.Errorf("buyer %d (instance %d) refused: %v", b, b%instances, a.err)
		case a.order != "":
			orders = append(orders, a.order)
		case a.code != string(checkout.OutOfStock):
			t.Errorf("buyer %d: user error %q, want an order or %s", b, a.code, checkout.OutOfStock)
		}
	}
	if len(orders) != stock {
		t.Fatalf("%d orders for %d units", len(orders), stock)
	}
	t.Logf("%d buyers answered in %s; PostgreSQL's connections to the shop database peaked at %d (max_connections 100)", buyers, saleTook.Round(time.Millisecond), peak)
	// Besides the pooler's: the sampler's own connection and instance 0's direct LISTEN
	// session (DATABASE_SESSION_URL).
	if peak > serverConns+2 {
		t.Errorf("PostgreSQL had %d connections to the shop database, the pooler holds %d (and 2 direct ones)", peak, serverConns)
	}
	testutil.Eventually(t, 60*time.Second, "every order PAID", func() bool {
		var paid int
		shop.QueryRow(ctx, "SELECT count(*) FROM orders WHERE status = 'PAID'").Scan(&paid)
		return paid == stock
	})
	once := func() (missing, twice []string) {
		mu.Lock()
		defer mu.Unlock()
		for _, id := range orders {
			for _, typ := range []string{event.OrderPlaced, event.OrderPaid} {
				switch delivered[typ+"/"+id] {
				case 0:
					missing = append(missing, typ+"/"+id)
				case 1:
				default:
					twice = append(twice, typ+"/"+id)
				}
			}
		}
		return
	}
	if !testutil.Within(60*time.Second, func() bool { missing, _ := once(); return len(missing) == 0 }) {
		missing, _ := once()
		var tasks []string
		rows, _ := shop.Query(ctx, "SELECT status || ' ' || event_type || ' ' || attempts, count(*) FROM webhook_tasks GROUP BY 1")
		for rows.Next() {
			var k string
			var n int
			rows.Scan(&k, &n)
			tasks = append(tasks, fmt.Sprintf("%s: %d", k, n))
		}
		mu.Lock()
		t.Fatalf("%d events never reached the partner (%d keys delivered); webhook tasks: %v", len(missing), len(delivered), tasks)
	}
	time.Sleep(time.Second) // a duplicate would come within the retry delay
	if _, twice := once(); len(twice) > 0 {
		t.Errorf("delivered more than once to the partner: %v", twice)
	}
}
