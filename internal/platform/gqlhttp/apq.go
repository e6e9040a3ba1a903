package gqlhttp

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/redis/go-redis/v9"
)

// RedisCache stores automatic persisted queries (hash -> query text) in Redis, so a hash
// registered on one instance runs on every other. An entry lives TTL after its last use.
// Redis being slow or down never fails a request: a lookup then misses (the client
// resends the text) and a store is dropped; both are logged.
type RedisCache struct {
	client  redis.UniversalClient
	prefix  string
	ttl     time.Duration
	timeout time.Duration
	logger  *slog.Logger
}

var _ graphql.Cache[string] = (*RedisCache)(nil)

// DefaultAPQTTL is how long an unused automatic persisted query stays in Redis.
const DefaultAPQTTL = 24 * time.Hour

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

// Get returns the text of a hash, refreshing its TTL.
func (c *RedisCache) Get(ctx context.Context, hash string) (string, bool) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	v, err := c.client.GetEx(ctx, c.prefix+hash, c.ttl).Result()
	if err != nil {
		if !errors.Is(err, redis.Nil) {
			c.logger.WarnContext(ctx, "persisted query store: lookup failed", "error", err)
		}
		return "", false
	}
	return v, true
}

// Add stores the text of a hash.
func (c *RedisCache) Add(ctx context.Context, hash, query string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
	defer cancel()
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
