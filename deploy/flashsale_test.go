package deploy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/checkout-backend/checkout/internal/testutil"
)

// TestRunningService_FlashSaleAtDefaults_NobodyShed is the flash sale a new user tries
// first, on the binary with every setting at its default (only where its dependencies
// are and its names on the broker): 400 buyers, 100 at a time, one SKU with stock 50.
// Every buyer gets a sale or OUT_OF_STOCK: exactly 50 orders, 350 OUT_OF_STOCK, and not
// one 503 or 429 (the defaults must serve a flash sale, not shed it).
func TestRunningService_FlashSaleAtDefaults_NobodyShed(t *testing.T) {
	t.Parallel()
	testutil.Slow(t)
	db := testutil.NewDB(t)
	// Defaults everywhere else: no CHECKOUT_CONCURRENCY, CLIENT_RATE, OVERLOAD_MAX_WAIT or
	// RESERVATION_STRATEGY of the test's own. GOGC and GOMAXPROCS are left to the binary.
	env := []string{}
	for _, kv := range os.Environ() {
		if !hasAnyPrefix(kv, "CHECKOUT_", "CLIENT_", "OVERLOAD_", "RESERVATION_", "BATCH_", "DB_", "WORKER_", "GOGC=", "GOMAXPROCS=") {
			env = append(env, kv)
		}
	}
	s := startService(t, append(env, "DATABASE_URL="+db.URL, "AMQP_URL="+testutil.AMQPURL(),
		"AMQP_PREFIX="+testutil.DeploymentPrefix(t), "JWT_SECRET="+testutil.Secret, "REDIS_URL="))

	admin := testutil.Token(t, "ops", "admin")
	s.gql(t, admin, `mutation { upsertProduct(input: {sku: "HOT", name: "Hot", priceCents: 1000, currency: "USD"}) { sku } }`, nil)
	s.gql(t, admin, `mutation { setStock(sku: "HOT", warehouse: "w", onHand: 50) { onHand } }`, nil)

	const buyers, inFlight = 400, 100
	tokens := make([]string, buyers)
	for i := range tokens {
		tokens[i] = testutil.Token(t, fmt.Sprintf("buyer-%d", i))
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: inFlight}, Timeout: 30 * time.Second}
	t.Cleanup(client.CloseIdleConnections)
	var mu sync.Mutex
	outcomes := map[string]int{}
	sem := make(chan struct{}, inFlight)
	var wg sync.WaitGroup
	for i := 0; i < buyers; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer func() { <-sem; wg.Done() }()
			outcome := buy(client, s.url, tokens[i], fmt.Sprintf("flash-%d", i))
			mu.Lock()
			outcomes[outcome]++
			mu.Unlock()
		}(i)
	}
	wg.Wait()

	if outcomes["placed"] != 50 || outcomes["OUT_OF_STOCK"] != 350 || len(outcomes) != 2 {
		t.Fatalf("400 buyers on stock 50 at defaults: %v; want 50 placed, 350 OUT_OF_STOCK and nothing else", outcomes)
	}
	var orders int
	if err := db.NewRaw("SELECT count(*) FROM orders").Scan(context.Background(), &orders); err != nil || orders != 50 {
		t.Fatalf("%d orders in the database (%v), want 50", orders, err)
	}
	t.Logf("outcomes %v", outcomes)
}

// buy places one checkout of one unit of HOT and names what the buyer saw: "placed",
// a userError code, or the HTTP status or GraphQL error code it got instead.
func buy(client *http.Client, base, token, key string) string {
	body := fmt.Sprintf(`{"query":"mutation($in: CheckoutInput!) { checkout(input: $in) { order { id } userErrors { code } } }","variables":{"in":{"idempotencyKey":%q,"paymentToken":"tok_visa","items":[{"sku":"HOT","quantity":1}]}}}`, key)
	req, _ := http.NewRequest(http.MethodPost, base+"/graphql", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return "transport error"
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Sprintf("HTTP %d", resp.StatusCode)
	}
	var out struct {
		Data struct {
			Checkout struct {
				Order      *struct{ ID string }
				UserErrors []struct{ Code string }
			}
		}
		Errors []struct {
			Extensions struct{ Code string }
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return "undecodable answer"
	}
	switch {
	case len(out.Errors) > 0:
		return "GraphQL " + out.Errors[0].Extensions.Code
	case len(out.Data.Checkout.UserErrors) > 0:
		return out.Data.Checkout.UserErrors[0].Code
	case out.Data.Checkout.Order != nil && out.Data.Checkout.Order.ID != "":
		return "placed"
	}
	return "empty answer"
}

func hasAnyPrefix(s string, prefixes ...string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
