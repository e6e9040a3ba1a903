package graph_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"

	"github.com/checkout-backend/checkout/graph/gqlhttp"
	"github.com/checkout-backend/checkout/internal/testutil"
)

const shippedCartMutation = `mutation NewCart { createCart { id } }`

// apolloManifest is what @apollo/generate-persisted-query-manifest (or Apollo iOS and
// Kotlin) writes for an app shipping ops.
func apolloManifest(t *testing.T, ops ...[3]string) *gqlhttp.Manifest {
	t.Helper()
	var list []map[string]string
	for _, o := range ops {
		list = append(list, map[string]string{"id": sha256Hex(o[2]), "name": o[0], "type": o[1], "body": o[2]})
	}
	b, _ := json.Marshal(map[string]any{"format": "apollo-persisted-query-manifest", "version": 1, "operations": list})
	m, err := gqlhttp.ParseManifest(b)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func requireAPI(t *testing.T, m *gqlhttp.Manifest) *testutil.API {
	t.Helper()
	return newTransportAPI(t, testutil.APIOptions{HTTP: gqlhttp.Options{Persisted: gqlhttp.PersistedOptions{Mode: gqlhttp.ModeRequire, Manifest: m}}})
}

func TestTrustedDocuments_Require(t *testing.T) {
	t.Parallel()
	api := requireAPI(t, apolloManifest(t, [3]string{"Products", "query", productsQuery}, [3]string{"NewCart", "mutation", shippedCartMutation}))
	hash := sha256Hex(productsQuery)

	// A listed operation runs by hash: GET (Apollo's useGETForHashedQueries), POST,
	// and as a documentId.
	wantProducts(t, byHash(t, api.Handler, hash, mediaGR), mediaGR)
	wantProducts(t, post(t, api.Handler, map[string]any{"extensions": pqExt(hash), "variables": map[string]any{"first": 3}}, "Accept", mediaGR), mediaGR)
	wantProducts(t, post(t, api.Handler, map[string]any{"documentId": "sha256:" + hash}, "Accept", mediaGR), mediaGR)
	// A listed mutation by hash over POST.
	tok := testutil.Token(t, "mobile")
	r := post(t, api.Handler, map[string]any{"extensions": pqExt(sha256Hex(shippedCartMutation))}, "Accept", mediaGR, "Authorization", "Bearer "+tok)
	if r.Status != http.StatusOK || len(r.Errors) > 0 {
		t.Fatalf("listed mutation: %d %s", r.Status, r.Body)
	}
	// The listed text itself runs too (it is the same document).
	wantProducts(t, post(t, api.Handler, map[string]any{"query": productsQuery}, "Accept", mediaGR), mediaGR)

	// Anything else is refused.
	unlisted := `{ products(first: 100) { edges { node { sku name } } } }`
	for name, r := range map[string]*httpResult{
		"unlisted text":           post(t, api.Handler, map[string]any{"query": unlisted}, "Accept", mediaGR),
		"unlisted text over GET":  get(t, api.Handler, url.Values{"query": {unlisted}}, "Accept", mediaGR),
		"unlisted APQ register":   post(t, api.Handler, map[string]any{"query": unlisted, "extensions": pqExt(sha256Hex(unlisted))}, "Accept", mediaGR),
		"a whitespace difference": post(t, api.Handler, map[string]any{"query": productsQuery + " "}, "Accept", mediaGR),
	} {
		if r.Status != http.StatusForbidden || r.Code() != gqlhttp.CodePersistedQueryNotInList || r.HasData {
			t.Errorf("%s: %d %s", name, r.Status, r.Body)
		}
	}
	if r := byHash(t, api.Handler, sha256Hex(unlisted), mediaGR); r.Status != http.StatusNotFound || r.Code() != gqlhttp.CodePersistedQueryNotFound {
		t.Errorf("unknown hash: %d %s", r.Status, r.Body)
	}
	// A listed hash with another text is a mismatch, not a way in.
	if r := post(t, api.Handler, map[string]any{"query": unlisted, "extensions": pqExt(hash)}, "Accept", mediaGR); r.Code() != gqlhttp.CodePersistedQueryHashMismatch {
		t.Errorf("listed hash, other text: %d %s", r.Status, r.Body)
	}
	// Legacy clients get 200 with the error.
	if r := post(t, api.Handler, map[string]any{"query": unlisted}, "Accept", mediaJSON); r.Status != http.StatusOK || r.Code() != gqlhttp.CodePersistedQueryNotInList {
		t.Errorf("unlisted, application/json: %d %s", r.Status, r.Body)
	}
}

func TestTrustedDocuments_CodegenMapManifest(t *testing.T) {
	t.Parallel()
	// GraphQL Codegen's client preset writes {hash: document} (SHA-1 unless configured
	// otherwise); clients send the hash as documentId or in extensions.persistedQuery.
	m, err := gqlhttp.ParseManifest([]byte(`{"3f5c1ab9c0ee3f7b0a3a8a27a6d7c0f6a1c1e0a2": ` + mustJSON(productsQuery) + `}`))
	if err != nil {
		t.Fatal(err)
	}
	api := requireAPI(t, m)
	wantProducts(t, post(t, api.Handler, map[string]any{"documentId": "3f5c1ab9c0ee3f7b0a3a8a27a6d7c0f6a1c1e0a2"}, "Accept", mediaGR), mediaGR)
	wantProducts(t, get(t, api.Handler, url.Values{"extensions": {pqExtJSON("3f5c1ab9c0ee3f7b0a3a8a27a6d7c0f6a1c1e0a2")}}, "Accept", mediaGR), mediaGR)
	// The listed text with its SHA-256 (what Apollo's APQ link would send) also runs.
	wantProducts(t, post(t, api.Handler, map[string]any{"query": productsQuery, "extensions": pqExt(sha256Hex(productsQuery))}, "Accept", mediaGR), mediaGR)
}

func TestTrustedDocuments_AllowModeServesManifestAndAPQ(t *testing.T) {
	t.Parallel()
	m := apolloManifest(t, [3]string{"Products", "query", productsQuery})
	api := newTransportAPI(t, testutil.APIOptions{HTTP: gqlhttp.Options{Persisted: gqlhttp.PersistedOptions{Mode: gqlhttp.ModeAllow, Manifest: m}}})
	// Preregistered by the manifest: runs by hash without ever being sent.
	wantProducts(t, byHash(t, api.Handler, sha256Hex(productsQuery), mediaGR), mediaGR)
	// Other documents run as text, and register as APQ.
	q := `{ products(first: 1) { edges { node { sku } } } }`
	if r := post(t, api.Handler, map[string]any{"query": q, "extensions": pqExt(sha256Hex(q))}, "Accept", mediaGR); r.Status != 200 || len(r.Errors) > 0 {
		t.Fatalf("%d %s", r.Status, r.Body)
	}
	if r := get(t, api.Handler, url.Values{"extensions": {pqExtJSON(sha256Hex(q))}}, "Accept", mediaGR); r.Status != 200 || len(r.Errors) > 0 {
		t.Fatalf("%d %s", r.Status, r.Body)
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
