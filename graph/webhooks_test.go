package graph_test

import (
	"strings"
	"testing"

	"github.com/checkout-backend/checkout/internal/testutil"
)

func TestWebhooksAPI(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	api := testutil.NewAPI(t, db, testutil.APIOptions{StrictWebhookURLs: true})
	admin := testutil.Token(t, "ops", "admin")
	const register = `mutation($in: WebhookInput!) { registerWebhook(input: $in) { webhook { id url events enabled disabledReason } secret userErrors { code field message } } }`

	// Customers and partners cannot manage webhooks.
	for _, tok := range []string{testutil.Token(t, "alice"), testutil.Token(t, "erp", "partner")} {
		if code := api.Do(t, tok, register, map[string]any{"in": map[string]any{"url": "https://93.184.215.14/h", "events": []string{"*"}}}).ErrorCode(); code != "FORBIDDEN" {
			t.Fatalf("non-admin register: %q", code)
		}
	}
	var r struct {
		RegisterWebhook struct {
			Webhook *struct {
				ID      string   `json:"id"`
				Events  []string `json:"events"`
				Enabled bool     `json:"enabled"`
			} `json:"webhook"`
			Secret     *string `json:"secret"`
			UserErrors []struct {
				Code  string   `json:"code"`
				Field []string `json:"field"`
			} `json:"userErrors"`
		} `json:"registerWebhook"`
	}
	for _, bad := range []map[string]any{
		{"url": "http://169.254.169.254/latest/meta-data", "events": []string{"*"}},
		{"url": "http://127.0.0.1:9000/hook", "events": []string{"*"}},
		{"url": "gopher://x", "events": []string{"*"}},
	} {
		decode(t, api.Do(t, admin, register, map[string]any{"in": bad}), &r)
		if r.RegisterWebhook.Webhook != nil || r.RegisterWebhook.Secret != nil || r.RegisterWebhook.UserErrors[0].Code != "INVALID_WEBHOOK_URL" {
			t.Fatalf("%v: %+v", bad["url"], r.RegisterWebhook)
		}
	}
	decode(t, api.Do(t, admin, register, map[string]any{"in": map[string]any{"url": "https://93.184.215.14/h", "events": []string{"order.nope"}}}), &r)
	if r.RegisterWebhook.UserErrors[0].Code != "INVALID_INPUT" {
		t.Fatalf("unknown event type: %+v", r.RegisterWebhook)
	}
	decode(t, api.Do(t, admin, register, map[string]any{"in": map[string]any{"url": "https://93.184.215.14/h", "events": []string{"order.paid", "order.placed"}}}), &r)
	if r.RegisterWebhook.Webhook == nil || r.RegisterWebhook.Secret == nil || len(*r.RegisterWebhook.Secret) < 40 || !r.RegisterWebhook.Webhook.Enabled {
		t.Fatalf("register: %+v", r.RegisterWebhook)
	}
	id := r.RegisterWebhook.Webhook.ID

	// The secret is never shown again.
	resp := api.Do(t, admin, `{ webhooks { id url events enabled } webhookDeliveries(webhookId: "`+id+`") { edges { node { id } } pageInfo { hasNextPage } } }`, nil)
	if len(resp.Errors) > 0 || strings.Contains(string(resp.Data), *r.RegisterWebhook.Secret) || !strings.Contains(string(resp.Data), id) {
		t.Fatalf("list: %s %+v", resp.Data, resp.Errors)
	}
	var del struct {
		DeleteWebhook struct {
			Webhook    *struct{ ID string } `json:"webhook"`
			UserErrors []struct{ Code string }
		} `json:"deleteWebhook"`
	}
	decode(t, api.Do(t, admin, `mutation($id: ID!) { deleteWebhook(id: $id) { webhook { id } userErrors { code } } }`, map[string]any{"id": id}), &del)
	if del.DeleteWebhook.Webhook == nil {
		t.Fatalf("delete: %+v", del)
	}
	decode(t, api.Do(t, admin, `mutation($id: ID!) { deleteWebhook(id: $id) { webhook { id } userErrors { code } } }`, map[string]any{"id": id}), &del)
	if del.DeleteWebhook.UserErrors[0].Code != "NOT_FOUND" {
		t.Fatalf("delete again: %+v", del)
	}
	resp = api.Do(t, admin, `{ webhooks { id } }`, nil)
	if string(resp.Data) != `{"webhooks":[]}` {
		t.Fatalf("after delete: %s", resp.Data)
	}
	resp = api.Do(t, admin, `mutation { enableWebhook(id: "nope") { webhook { id } userErrors { code } } }`, nil)
	if !strings.Contains(string(resp.Data), "NOT_FOUND") {
		t.Fatalf("enable unknown: %s", resp.Data)
	}
}
