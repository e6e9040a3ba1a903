package gqlhttp

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/checkout-backend/checkout/internal/platform/config"
	"github.com/checkout-backend/checkout/internal/platform/tlsx"
)

// Options configure the GraphQL endpoint's transport; the zero value is the defaults
// (default limits, automatic persisted queries in an in-process LRU, no CORS).
type Options struct {
	Limits    Limits
	Persisted PersistedOptions
	CORS      CORS
	// Validation bounds the errors of a failed document and remembers failed documents
	// (nil: a new one with the defaults).
	Validation *Validation
}

// APQKeyPrefix prefixes the Redis keys of automatic persisted queries.
const APQKeyPrefix = "checkout:apq:"

// FromConfig builds the options from the configuration (config.Validate checked its
// values): it loads the manifest of PERSISTED_QUERIES_MANIFEST and, with REDIS_URL,
// stores automatic persisted queries in Redis (shared by every instance, bounded by
// APQ_MAX_ENTRIES, APQ_MAX_ENTRIES_PER_CLIENT and APQ_TTL). release closes the Redis client.
func FromConfig(ctx context.Context, cfg config.Config, logger *slog.Logger) (_ Options, release func(), _ error) {
	release = func() {}
	q := cfg.GraphQL
	mode, err := ParseMode(q.PersistedQueries)
	if err != nil {
		return Options{}, release, fmt.Errorf("config: %w", err)
	}
	var manifest *Manifest
	if q.Manifest != "" {
		if manifest, err = LoadManifest(q.Manifest); err != nil {
			return Options{}, release, fmt.Errorf("config: PERSISTED_QUERIES_MANIFEST: %w", err)
		}
	}
	origins := make([]string, 0, len(q.CORSAllowedOrigins))
	for _, o := range q.CORSAllowedOrigins {
		if o = strings.TrimSuffix(strings.TrimSpace(o), "/"); o != "" {
			origins = append(origins, o)
		}
	}
	if err := ValidateOrigins(origins); err != nil {
		return Options{}, release, fmt.Errorf("config: %w", err)
	}
	opt := Options{
		Limits: Limits{
			MaxComplexity: q.MaxComplexity, MaxDepth: q.MaxDepth, MaxAliases: q.MaxAliases,
			MaxRootFields: q.MaxRootFields, MaxBodyBytes: q.MaxBodyBytes, MaxTokens: q.MaxTokens,
		},
		Persisted: PersistedOptions{Mode: mode, Manifest: manifest, MaxQueryBytes: q.APQMaxQueryBytes},
		CORS:      CORS{AllowedOrigins: origins},
	}
	store := "memory"
	if mode == ModeAllow && cfg.Redis.URL != "" {
		// TLS: rediss:// verified with REDIS_TLS_CA_FILE, REDIS_TLS_CERT_FILE presented.
		r := cfg.Redis
		ro, err := tlsx.RedisOptions(r.URL, tlsx.Files{CA: r.CAFile, Cert: r.CertFile, Key: r.KeyFile}, logger)
		if err != nil {
			return Options{}, release, fmt.Errorf("config: %w", err)
		}
		if ro.DialTimeout == 0 {
			ro.DialTimeout = time.Second
		}
		client := redis.NewClient(ro)
		release = func() { client.Close() }
		pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		if err := client.Ping(pctx).Err(); err != nil {
			// Not fatal: lookups miss and clients resend their queries until Redis is back.
			logger.Warn("persisted query store: Redis is not reachable yet", "error", err)
		}
		shared := NewRedisCache(client, APQKeyPrefix, q.APQTTL, logger)
		shared.MaxEntries, shared.MaxPerClient = q.APQMaxEntries, q.APQMaxEntriesPerClient
		opt.Persisted.Cache = NewTiered(shared, 1000)
		store = "redis"
	}
	logger.Info("graphql transport", "persistedQueries", string(mode), "manifestOperations", manifest.Len(),
		"apqStore", store, "corsOrigins", strings.Join(origins, ","), "maxComplexity", q.MaxComplexity,
		"maxDepth", q.MaxDepth, "maxAliases", q.MaxAliases, "maxRootFields", q.MaxRootFields,
		"maxBodyBytes", q.MaxBodyBytes, "maxTokens", q.MaxTokens, "introspection", cfg.Introspection())
	return opt, release, nil
}

// SocketOptionsFromConfig are the WebSocket settings of the configuration; the caller
// adds the client key and the rate (internal/platform/overload).
func SocketOptionsFromConfig(cfg config.Config) SocketOptions {
	k := cfg.Sockets
	return SocketOptions{InitTimeout: k.InitTimeout, PingInterval: k.PingInterval, WriteTimeout: k.WriteTimeout,
		MaxPerClient: k.PerClient, MaxSubscriptionsPerClient: k.SubscriptionsPerClient}
}
