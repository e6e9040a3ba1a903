package graph_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/checkout-backend/checkout/graph/gqlhttp"
	"github.com/checkout-backend/checkout/internal/platform/overload"
	"github.com/checkout-backend/checkout/internal/testutil"
)

func sha256Hex(s string) string {
	b := sha256.Sum256([]byte(s))
	return hex.EncodeToString(b[:])
}

func pqExt(hash string) map[string]any {
	return map[string]any{"persistedQuery": map[string]any{"version": 1, "sha256Hash": hash}}
}

func pqExtJSON(hash string) string {
	b, _ := json.Marshal(pqExt(hash))
	return string(b)
}

// byHash sends a persisted query by hash alone over GET, as Apollo Client does with
// useGETForHashedQueries.
func byHash(t *testing.T, h http.Handler, hash string, accept string) *httpResult {
	t.Helper()
	return get(t, h, url.Values{"extensions": {pqExtJSON(hash)}, "variables": {`{"first": 5}`}, "operationName": {"Products"}}, "Accept", accept)
}

func TestAPQ_UnknownHash_NotFound(t *testing.T) {
	t.Parallel()
	api := newTransportAPI(t)
	hash := sha256Hex(productsQuery)
	for _, tc := range []struct {
		accept string
		status int
	}{{mediaJSON, 200}, {mediaGR, 404}} {
		for name, r := range map[string]*httpResult{
			"GET":  byHash(t, api.Handler, hash, tc.accept),
			"POST": post(t, api.Handler, map[string]any{"extensions": pqExt(hash)}, "Accept", tc.accept),
		} {
			if r.Status != tc.status || r.Code() != gqlhttp.CodePersistedQueryNotFound || r.Errors[0].Message != "PersistedQueryNotFound" || r.HasData {
				t.Errorf("%s, Accept %s: %d %s", name, tc.accept, r.Status, r.Body)
			}
			if r.Status != 200 && r.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("%s: a not-found answer may be cached: %v", name, r.Header)
			}
		}
	}
}

func TestAPQ_RegisterThenByHashOverGET(t *testing.T) {
	t.Parallel()
	api := newTransportAPI(t)
	hash := sha256Hex(productsQuery)
	// Apollo's link: hash alone first (not found), then hash and query over POST.
	if r := byHash(t, api.Handler, hash, mediaGR); r.Code() != gqlhttp.CodePersistedQueryNotFound {
		t.Fatalf("first: %s", r.Body)
	}
	wantProducts(t, post(t, api.Handler, map[string]any{"query": productsQuery, "extensions": pqExt(hash), "variables": map[string]any{"first": 5}}, "Accept", mediaGR), mediaGR)
	for _, accept := range []string{mediaGR, mediaJSON} {
		wantProducts(t, byHash(t, api.Handler, hash, accept), accept)
	}
	// Also as a persisted document id, with its algorithm prefix.
	wantProducts(t, get(t, api.Handler, url.Values{"documentId": {"sha256:" + hash}}, "Accept", mediaGR), mediaGR)
	wantProducts(t, post(t, api.Handler, map[string]any{"documentId": hash}, "Accept", mediaGR), mediaGR)
}

func TestAPQ_HashMismatchRefused(t *testing.T) {
	t.Parallel()
	api := newTransportAPI(t)
	other := sha256Hex("{ __typename }")
	for _, accept := range []string{mediaGR, mediaJSON} {
		r := post(t, api.Handler, map[string]any{"query": productsQuery, "extensions": pqExt(other)}, "Accept", accept)
		want := map[string]int{mediaGR: 400, mediaJSON: 200}[accept]
		if r.Status != want || r.Code() != gqlhttp.CodePersistedQueryHashMismatch || r.HasData {
			t.Fatalf("Accept %s: %d %s", accept, r.Status, r.Body)
		}
	}
	// Nothing was stored under the wrong hash.
	if r := byHash(t, api.Handler, other, mediaGR); r.Code() != gqlhttp.CodePersistedQueryNotFound {
		t.Fatalf("the wrong hash was stored: %s", r.Body)
	}
}

func TestAPQ_OnlyValidDocumentsAreStored(t *testing.T) {
	t.Parallel()
	api := newTransportAPI(t)
	for _, q := range []string{`{ noSuchField }`, `{ a: __typename b: __typename ` + repeatAliases(40) + ` }`} {
		hash := sha256Hex(q)
		if r := post(t, api.Handler, map[string]any{"query": q, "extensions": pqExt(hash)}, "Accept", mediaGR); r.Status != http.StatusBadRequest {
			t.Fatalf("invalid document: %d %s", r.Status, r.Body)
		}
		if r := get(t, api.Handler, url.Values{"extensions": {pqExtJSON(hash)}}, "Accept", mediaGR); r.Code() != gqlhttp.CodePersistedQueryNotFound {
			t.Fatalf("an invalid document was stored: %s", r.Body)
		}
	}
}

func TestAPQ_Off_NotSupported(t *testing.T) {
	t.Parallel()
	api := newTransportAPI(t, testutil.APIOptions{HTTP: gqlhttp.Options{Persisted: gqlhttp.PersistedOptions{Mode: gqlhttp.ModeOff}}})
	r := byHash(t, api.Handler, sha256Hex(productsQuery), mediaGR)
	if r.Status != http.StatusBadRequest || r.Code() != gqlhttp.CodePersistedQueryNotSupported || r.Errors[0].Message != "PersistedQueryNotSupported" {
		t.Fatalf("got %d %s", r.Status, r.Body)
	}
	wantProducts(t, post(t, api.Handler, map[string]any{"query": productsQuery}, "Accept", mediaGR), mediaGR)
}

func TestAPQ_BadExtension(t *testing.T) {
	t.Parallel()
	api := newTransportAPI(t)
	for _, ext := range []map[string]any{
		{"persistedQuery": "abc"},
		{"persistedQuery": map[string]any{"version": 2, "sha256Hash": "abc"}},
		{"persistedQuery": map[string]any{"version": 1}},
	} {
		if r := post(t, api.Handler, map[string]any{"extensions": ext}, "Accept", mediaGR); r.Status != http.StatusBadRequest || r.Code() != gqlhttp.CodeBadRequest {
			t.Errorf("%v: %d %s", ext, r.Status, r.Body)
		}
	}
}

func redisClient(t *testing.T) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(testutil.RedisURL())
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("Redis is not reachable at REDIS_URL (%s): %v; run `make test`, which starts it", testutil.RedisURL(), err)
	}
	return c
}

func TestAPQ_SharedAcrossInstancesThroughRedis(t *testing.T) {
	t.Parallel()
	client := redisClient(t)
	prefix := "test:apq:" + testutil.RandomID(6) + ":"
	t.Cleanup(func() {
		keys, _ := client.Keys(context.Background(), prefix+"*").Result()
		if len(keys) > 0 {
			client.Del(context.Background(), keys...)
		}
	})
	instance := func(db *testutil.DB) *testutil.API {
		// Each instance has its own in-process tier, as separate processes would.
		cache := gqlhttp.NewTiered(gqlhttp.NewRedisCache(client, prefix, time.Hour, nil), 100)
		return testutil.NewAPI(t, db, testutil.APIOptions{HTTP: gqlhttp.Options{Persisted: gqlhttp.PersistedOptions{Cache: cache}}})
	}
	db := testutil.NewDB(t)
	a, b := instance(db), instance(db)
	a.Product(t, "TEE", 2500, map[string]int{"main": 5})
	hash := sha256Hex(productsQuery)

	if r := byHash(t, b.Handler, hash, mediaGR); r.Code() != gqlhttp.CodePersistedQueryNotFound {
		t.Fatalf("before registration: %s", r.Body)
	}
	wantProducts(t, post(t, a.Handler, map[string]any{"query": productsQuery, "extensions": pqExt(hash)}, "Accept", mediaGR), mediaGR)
	wantProducts(t, byHash(t, b.Handler, hash, mediaGR), mediaGR)

	ttl, err := client.TTL(context.Background(), prefix+hash).Result()
	if err != nil || ttl <= 0 || ttl > time.Hour {
		t.Fatalf("the Redis entry's TTL: %v %v", ttl, err)
	}
}

func TestAPQ_RedisDownDegradesGracefully(t *testing.T) {
	t.Parallel()
	// Nothing listens on port 1: every Redis call fails at once.
	dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
	t.Cleanup(func() { dead.Close() })
	api := newTransportAPI(t, testutil.APIOptions{HTTP: gqlhttp.Options{Persisted: gqlhttp.PersistedOptions{
		Cache: gqlhttp.NewRedisCache(dead, "test:apq:", time.Hour, nil)}}})
	hash := sha256Hex(productsQuery)
	if r := byHash(t, api.Handler, hash, mediaGR); r.Code() != gqlhttp.CodePersistedQueryNotFound {
		t.Fatalf("lookup with Redis down: %d %s", r.Status, r.Body)
	}
	wantProducts(t, post(t, api.Handler, map[string]any{"query": productsQuery, "extensions": pqExt(hash)}, "Accept", mediaGR), mediaGR)
}

// redisPrefix is a key prefix of this test's own, removed at its end.
func redisPrefix(t *testing.T, client *redis.Client) string {
	prefix := "test:apq:" + testutil.RandomID(6) + ":"
	t.Cleanup(func() {
		keys, _ := client.Keys(context.Background(), prefix+"*").Result()
		if len(keys) > 0 {
			client.Del(context.Background(), keys...)
		}
	})
	return prefix
}

// Whoever can write to Redis cannot make a known hash run another document: the text read
// back is hashed again before it is trusted.
func TestAPQ_TextReadFromRedisIsRehashed(t *testing.T) {
	t.Parallel()
	client := redisClient(t)
	prefix := redisPrefix(t, client)
	api := newTransportAPI(t, testutil.APIOptions{HTTP: gqlhttp.Options{Persisted: gqlhttp.PersistedOptions{
		Cache: gqlhttp.NewRedisCache(client, prefix, time.Hour, nil)}}})
	hash := sha256Hex(productsQuery)
	// Another document with the same operation name, written straight into Redis.
	if err := client.Set(context.Background(), prefix+hash, `query Products($first: Int) { products(first: $first) { pageInfo { hasNextPage } } }`, time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	if r := byHash(t, api.Handler, hash, mediaGR); r.Status != http.StatusNotFound || r.Code() != gqlhttp.CodePersistedQueryNotFound || r.HasData {
		t.Fatalf("a poisoned entry ran: %d %s", r.Status, r.Body)
	}
	// The client then sends the text, which replaces the entry and runs.
	wantProducts(t, post(t, api.Handler, map[string]any{"query": productsQuery, "extensions": pqExt(hash)}, "Accept", mediaGR), mediaGR)
	wantProducts(t, byHash(t, api.Handler, hash, mediaGR), mediaGR)
}

// In allow mode anyone may register texts: what they can store is bounded in size per
// document and in count per TTL window.
func TestAPQ_AllowMode_StoreIsBounded(t *testing.T) {
	t.Parallel()
	client := redisClient(t)
	prefix := redisPrefix(t, client)
	cache := gqlhttp.NewRedisCache(client, prefix, time.Hour, nil)
	cache.MaxEntries = 2
	api := newTransportAPI(t, testutil.APIOptions{HTTP: gqlhttp.Options{Persisted: gqlhttp.PersistedOptions{Cache: cache}}})
	register := func(q string) {
		t.Helper()
		if r := post(t, api.Handler, map[string]any{"query": q, "extensions": pqExt(sha256Hex(q))}, "Accept", mediaGR); r.Status != http.StatusOK || len(r.Errors) > 0 {
			t.Fatalf("register: %d %s", r.Status, r.Body)
		}
	}
	stored := func(q string) bool {
		t.Helper()
		r := get(t, api.Handler, url.Values{"extensions": {pqExtJSON(sha256Hex(q))}}, "Accept", mediaGR)
		return r.Status == http.StatusOK && len(r.Errors) == 0
	}
	// A text over the size bound (16 KiB by default) runs, but is not kept.
	big := "# " + strings.Repeat("x", 20<<10) + "\n{ __typename }"
	register(big)
	if stored(big) {
		t.Error("a 20 KiB text was stored")
	}
	qs := []string{`{ a: __typename }`, `{ b: __typename }`, `{ c: __typename }`}
	for _, q := range qs {
		register(q)
	}
	if !stored(qs[0]) || !stored(qs[1]) {
		t.Fatal("the first two texts of the window were not stored")
	}
	if stored(qs[2]) {
		t.Fatal("a third text was stored past MaxEntries = 2")
	}
}

// L1: the store's quota is shared fairly: one client registering 2,000 trivial texts (the
// whole APQ_MAX_ENTRIES of the window) leaves other clients, anonymous or signed in, able
// to register theirs.
func TestL1_OneClientsRegistrationsLeaveOthersAbleToRegister(t *testing.T) {
	t.Parallel()
	client := redisClient(t)
	prefix := redisPrefix(t, client)
	cache := gqlhttp.NewRedisCache(client, prefix, time.Hour, nil)
	shed := overload.New(overload.Options{}) // no rate limit: only the client's key
	api := newTransportAPI(t, testutil.APIOptions{Overload: shed.Middleware,
		HTTP: gqlhttp.Options{Persisted: gqlhttp.PersistedOptions{Cache: cache}}})
	register := func(addr, token, q string) {
		t.Helper()
		b, _ := json.Marshal(map[string]any{"query": q, "extensions": pqExt(sha256Hex(q))})
		req := httptest.NewRequest(http.MethodPost, "/graphql", strings.NewReader(string(b)))
		req.RemoteAddr = addr
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		w := httptest.NewRecorder()
		api.Handler.ServeHTTP(w, req)
		if w.Code != http.StatusOK || strings.Contains(w.Body.String(), `"errors"`) {
			t.Fatalf("register: %d %s", w.Code, w.Body.String())
		}
	}
	stored := func(q string) bool {
		n, err := client.Exists(context.Background(), prefix+sha256Hex(q)).Result()
		if err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
	for i := range gqlhttp.DefaultAPQMaxEntries {
		register("203.0.113.66:1", "", fmt.Sprintf("{ a%d: __typename }", i))
	}
	for _, c := range []struct{ who, addr, token, q string }{
		{"another anonymous client", "198.51.100.7:1", "", "{ other: __typename }"},
		{"a signed-in customer", "203.0.113.66:1", testutil.Token(t, "alice"), "{ alice: __typename }"},
	} {
		register(c.addr, c.token, c.q)
		if !stored(c.q) {
			t.Errorf("%s could not register after one client's %d registrations", c.who, gqlhttp.DefaultAPQMaxEntries)
		}
	}
}
