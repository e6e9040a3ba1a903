package gqlhttp

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/redis/go-redis/v9"
)

// RedisCache stores automatic persisted queries (hash -> query text) in Redis, so a hash
// registered on one instance runs on every other. What anyone can store is bounded: an
// entry lives TTL after it was stored (a use does not extend it; the client then sends
// the text once more), and at most MaxEntries are stored per TTL window, so Redis holds
// at most 2 x MaxEntries texts of at most PersistedOptions.MaxQueryBytes each. A text read
// back is hashed again and ignored unless it matches its key, so whoever can write to
// Redis cannot make a hash run another document. Redis being slow or down never fails a
// request: a lookup then misses (the client resends the text) and a store is dropped;
// both are logged.
type RedisCache struct {
	// MaxEntries bounds the texts stored per TTL window (0: DefaultAPQMaxEntries).
	MaxEntries int

	client  redis.UniversalClient
	prefix  string
	ttl     time.Duration
	timeout time.Duration
	logger  *slog.Logger
}

var _ graphql.Cache[string] = (*RedisCache)(nil)

// Defaults of RedisCache.
const (
	// DefaultAPQTTL is how long an automatic persisted query stays in Redis.
	DefaultAPQTTL = 24 * time.Hour
	// DefaultAPQMaxEntries bounds the texts stored per TTL window.
	DefaultAPQMaxEntries = 2000
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

// Add stores the text of a hash, unless MaxEntries were stored in this TTL window.
func (c *RedisCache) Add(ctx context.Context, hash, query string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
	defer cancel()
	limit := c.MaxEntries
	if limit <= 0 {
		limit = DefaultAPQMaxEntries
	}
	window := time.Now().UnixNano() / int64(c.ttl)
	counter := c.prefix + "stored:" + strconv.FormatInt(window, 10)
	var n *redis.IntCmd
	_, err := c.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		n = p.Incr(ctx, counter)
		p.Expire(ctx, counter, 2*c.ttl)
		return nil
	})
	switch {
	case err != nil:
		c.logger.WarnContext(ctx, "persisted query store: store failed", "error", err)
		return
	case n.Val() > int64(limit):
		if n.Val() == int64(limit)+1 {
			c.logger.WarnContext(ctx, "persisted query store: full for this window; new texts are not stored", "maxEntries", limit, "ttl", c.ttl.String())
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
