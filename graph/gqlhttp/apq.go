package gqlhttp

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/redis/go-redis/v9"

	"github.com/checkout-backend/checkout/internal/platform/overload"
)

// RedisCache stores automatic persisted queries (hash -> query text) in Redis, so a hash
// registered on one instance runs on every other. What anyone can store is bounded: an
// entry lives TTL after it was stored (a use does not extend it; the client then sends
// the text once more), and at most MaxEntries are stored per TTL window, so Redis holds
// at most 2 x MaxEntries texts of at most PersistedOptions.MaxQueryBytes each. The window's
// quota is shared fairly, so that no client can spend it for everyone: each client (as
// the shedder named it: overload.ClientOf) stores at most MaxPerClient texts per window,
// and anonymous clients together at most half of MaxEntries, so clients that rotate
// addresses can fill the anonymous half but never keep signed-in clients from
// registering. A text not stored still runs; its client sends the text again next time.
// A text read back is hashed again and ignored unless it matches its key, so whoever can
// write to Redis cannot make a hash run another document. Redis being slow or down never
// fails a request: a lookup then misses (the client resends the text) and a store is
// dropped; both are logged.
type RedisCache struct {
	// MaxEntries bounds the texts stored per TTL window (0: DefaultAPQMaxEntries).
	MaxEntries int
	// MaxPerClient bounds the texts one client stores per TTL window (0:
	// DefaultAPQMaxPerClient). A request no shedder let through (no client is known)
	// is held to MaxEntries alone.
	MaxPerClient int

	client  redis.UniversalClient
	prefix  string
	ttl     time.Duration
	timeout time.Duration
	logger  *slog.Logger
	full    [3]atomic.Int64 // the last window each quota was logged spent in
}

var _ graphql.Cache[string] = (*RedisCache)(nil)

// Defaults of RedisCache.
const (
	// DefaultAPQTTL is how long an automatic persisted query stays in Redis.
	DefaultAPQTTL = 24 * time.Hour
	// DefaultAPQMaxEntries bounds the texts stored per TTL window.
	DefaultAPQMaxEntries = 2000
	// DefaultAPQMaxPerClient bounds the texts one client stores per TTL window: a
	// storefront registers each of its few dozen operations once, and only where no
	// other client registered it first.
	DefaultAPQMaxPerClient = 100
)

// NewRedisCache stores under prefix+hash; ttl 0 is DefaultAPQTTL.
func NewRedisCache(client redis.UniversalClient, prefix string, ttl time.Duration, logger *slog.Logger) *RedisCache {
	if ttl <= 0 {
		ttl = DefaultAPQTTL
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &RedisCache{client: client, prefix: prefix, ttl: ttl, timeout: 500 * time.Millisecond, logger: logger}
}

// Get returns the text of a hash, if it is the text of that hash.
func (c *RedisCache) Get(ctx context.Context, hash string) (string, bool) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	v, err := c.client.Get(ctx, c.prefix+hash).Result()
	if err != nil {
		if !errors.Is(err, redis.Nil) {
			c.logger.WarnContext(ctx, "persisted query store: lookup failed", "error", err)
		}
		return "", false
	}
	if sha256Hex(v) != hash {
		c.logger.WarnContext(ctx, "persisted query store: an entry is not the text of its hash; ignored", "key", c.prefix+hash)
		return "", false
	}
	return v, true
}

// storeQuota takes one text of a window's quotas, all or none: the window's (KEYS[1],
// ARGV[1]), the client's (KEYS[2], ARGV[2]) and, for an anonymous client, the anonymous
// share (KEYS[3], ARGV[3]). It answers 0 when taken, else which quota is spent. ARGV[4]
// is the counters' lifetime (ms); ARGV[5] is "1" for a client, "2" for an anonymous
// one, "0" when no client is known. The keys share a hash tag (one Redis Cluster slot).
var storeQuota = redis.NewScript(`
local function n(k) return tonumber(redis.call('GET', k) or '0') end
if n(KEYS[1]) >= tonumber(ARGV[1]) then return 1 end
if ARGV[5] ~= '0' and n(KEYS[2]) >= tonumber(ARGV[2]) then return 2 end
if ARGV[5] == '2' and n(KEYS[3]) >= tonumber(ARGV[3]) then return 3 end
local keys = {KEYS[1]}
if ARGV[5] ~= '0' then table.insert(keys, KEYS[2]) end
if ARGV[5] == '2' then table.insert(keys, KEYS[3]) end
for _, k in ipairs(keys) do
  redis.call('INCR', k)
  redis.call('PEXPIRE', k, ARGV[4])
end
return 0
`)

// Add stores the text of a hash, unless a quota of this TTL window is spent: the
// window's MaxEntries, the client's MaxPerClient, or the anonymous clients' half.
func (c *RedisCache) Add(ctx context.Context, hash, query string) {
	client := overload.ClientOf(ctx)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
	defer cancel()
	limit, perClient := c.MaxEntries, c.MaxPerClient
	if limit <= 0 {
		limit = DefaultAPQMaxEntries
	}
	if perClient <= 0 {
		perClient = DefaultAPQMaxPerClient
	}
	window := time.Now().UnixNano() / int64(c.ttl)
	tag := c.prefix + "stored:{" + strconv.FormatInt(window, 10) + "}"
	sum := sha256.Sum256([]byte(client))
	kind := "1"
	switch {
	case client == "":
		kind = "0"
	case strings.HasPrefix(client, overload.AnonymousKeyPrefix):
		kind = "2"
	}
	spent, err := storeQuota.Run(ctx, c.client, []string{tag, tag + ":client:" + hex.EncodeToString(sum[:16]), tag + ":anonymous"},
		limit, perClient, max(1, limit/2), (2 * c.ttl).Milliseconds(), kind).Int()
	switch {
	case err != nil:
		c.logger.WarnContext(ctx, "persisted query store: store failed", "error", err)
		return
	case spent != 0:
		if c.full[spent-1].Swap(window) != window {
			c.logger.WarnContext(ctx, "persisted query store: "+[]string{"full", "a client's quota is spent", "the anonymous share is spent"}[spent-1]+
				" for this window; such new texts are not stored", "maxEntries", limit, "maxPerClient", perClient, "ttl", c.ttl.String())
		}
		return
	}
	if err := c.client.Set(ctx, c.prefix+hash, query, c.ttl).Err(); err != nil {
		c.logger.WarnContext(ctx, "persisted query store: store failed", "error", err)
	}
}

// Tiered reads through a small in-process LRU to a shared cache. An entry never changes
// (a hash names one text), so the local copy is never stale.
type Tiered struct {
	local  *lru.LRU[string]
	shared graphql.Cache[string]
}

var _ graphql.Cache[string] = (*Tiered)(nil)

// NewTiered puts an LRU of size entries in front of shared.
func NewTiered(shared graphql.Cache[string], size int) *Tiered {
	return &Tiered{local: lru.New[string](size), shared: shared}
}

// Get looks locally, then in the shared cache.
func (t *Tiered) Get(ctx context.Context, key string) (string, bool) {
	if v, ok := t.local.Get(ctx, key); ok {
		return v, true
	}
	v, ok := t.shared.Get(ctx, key)
	if ok {
		t.local.Add(ctx, key, v)
	}
	return v, ok
}

// Add stores in both.
func (t *Tiered) Add(ctx context.Context, key, value string) {
	t.local.Add(ctx, key, value)
	t.shared.Add(ctx, key, value)
}
