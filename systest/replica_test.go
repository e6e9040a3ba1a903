package systest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/checkout-backend/checkout/internal/node"
	"github.com/checkout-backend/checkout/internal/testutil"
)

func gql(t *testing.T, base, token, query string, vars map[string]any) map[string]any {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, _ := http.NewRequest(http.MethodPost, base+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	if out["errors"] != nil {
		t.Fatalf("%s: errors %v", query, out["errors"])
	}
	return out["data"].(map[string]any)
}

// TestServe_CatalogReadsFromTheReplica_CheckoutOnThePrimary runs the checkout binary with
// DATABASE_URL listing a standby and its primary (read-write found by pgx),
// DATABASE_READ_URL on the standby and an AMQP_URL whose first node is down. With replay
// paused on the standby, a product created through the API is invisible to catalog
// reads (they go to the replica) while a checkout of it succeeds (checkout reads the
// primary); once replay resumes, the catalog shows it.
func TestServe_CatalogReadsFromTheReplica_CheckoutOnThePrimary(t *testing.T) {
	testutil.Slow(t) // a private RabbitMQ or PostgreSQL node of its own
	t.Parallel()
	primary := node.StartPostgres(t, node.PostgresOptions{Name: "primary"})
	standby := node.StartPostgres(t, node.PostgresOptions{Name: "replica", StandbyOf: primary})
	in := launchServe(t, testutil.BuildCheckout(t), t.TempDir(), "service",
		"DATABASE_URL="+node.MultiHostURL("postgres", standby, primary),
		"DATABASE_READ_URL="+standby.URL(),
		fmt.Sprintf("AMQP_URL=amqp://guest:guest@127.0.0.1:%d/,%s", testutil.FreePort(t), testutil.AMQPURL()),
		"AMQP_PREFIX="+testutil.DeploymentPrefix(t), "WORKER_RETRY_DELAYS=1s")
	in.waitReady(t)
	base := in.base

	ctx := context.Background()
	sc, err := pgx.Connect(ctx, standby.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close(ctx)
	if _, err := sc.Exec(ctx, "SELECT pg_wal_replay_pause()"); err != nil {
		t.Fatal(err)
	}
	admin := testutil.Token(t, "admin", "admin")
	gql(t, base, admin, `mutation { upsertProduct(input: {sku: "NEW", name: "New", priceCents: 700, currency: "USD"}) { sku } }`, nil)
	gql(t, base, admin, `mutation { setStock(sku: "NEW", warehouse: "w", onHand: 5) { onHand } }`, nil)
	if p := gql(t, base, admin, `{ product(sku: "NEW") { sku } }`, nil)["product"]; p != nil {
		t.Fatalf("product read %v while the replica's replay is paused: catalog reads do not go to DATABASE_READ_URL", p)
	}
	out := gql(t, base, testutil.Token(t, "alice"), checkoutMutation, map[string]any{"in": map[string]any{
		"idempotencyKey": "k1", "paymentToken": "tok_visa", "items": []any{map[string]any{"sku": "NEW", "quantity": 2}}}})
	order, _ := out["checkout"].(map[string]any)["order"].(map[string]any)
	if order == nil || order["id"] == "" {
		t.Fatalf("checkout of a product the replica does not have yet: %v", out)
	}
	if _, err := sc.Exec(ctx, "SELECT pg_wal_replay_resume()"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, "the catalog shows the product once the replica caught up", func() bool {
		return gql(t, base, admin, `{ product(sku: "NEW") { sku } }`, nil)["product"] != nil
	})
}
