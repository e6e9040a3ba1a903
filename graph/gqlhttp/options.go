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
}

// APQKeyPrefix prefixes the Redis keys of automatic persisted queries.
const APQKeyPrefix = "checkout:apq:"

// FromConfig builds the options from the configuration: it loads the manifest of
// PERSISTED_QUERIES_MANIFEST and, with REDIS_URL, stores automatic persisted queries in
// Redis (shared by every instance, bounded by APQ_MAX_ENTRIES and APQ_TTL). release
// closes the Redis client.
func FromConfig(ctx context.Context, cfg config.Config, logger *slog.Logger) (_ Options, release func(), _ error) {
	release = func() {}
	mode, err := ParseMode(cfg.PersistedQueries)
	if err != nil {
		return Options{}, release, fmt.Errorf("config: %w", err)
	}
	var manifest *Manifest
	if cfg.PersistedQueriesManifest != "" {
		if manifest, err = LoadManifest(cfg.PersistedQueriesManifest); err != nil {
			return Options{}, release, fmt.Errorf("config: PERSISTED_QUERIES_MANIFEST: %w", err)
		}
	}
	if mode == ModeRequire && manifest == nil {
		return Options{}, release, fmt.Errorf("config: PERSISTED_QUERIES=require needs PERSISTED_QUERIES_MANIFEST")
	}
	origins := make([]string, 0, len(cfg.CORSAllowedOrigins))
	for _, o := range cfg.CORSAllowedOrigins {
		if o = strings.TrimSuffix(strings.TrimSpace(o), "/"); o != "" {
			origins = append(origins, o)
		}
	}
	if err := ValidateOrigins(origins); err != nil {
		return Options{}, release, fmt.Errorf("config: %w", err)
	}
	for name, v := range map[string]int64{
		"GRAPHQL_MAX_COMPLEXITY": int64(cfg.GraphQLMaxComplexity), "GRAPHQL_MAX_DEPTH": int64(cfg.GraphQLMaxDepth),
		"GRAPHQL_MAX_ALIASES": int64(cfg.GraphQLMaxAliases), "GRAPHQL_MAX_ROOT_FIELDS": int64(cfg.GraphQLMaxRootFields),
		"GRAPHQL_MAX_BODY_BYTES": cfg.GraphQLMaxBodyBytes, "GRAPHQL_MAX_TOKENS": int64(cfg.GraphQLMaxTokens),
		"APQ_MAX_QUERY_BYTES": int64(cfg.APQMaxQueryBytes), "APQ_MAX_ENTRIES": int64(cfg.APQMaxEntries), "APQ_TTL": int64(cfg.APQTTL),
	} {
		if v <= 0 {
			return Options{}, release, fmt.Errorf("config: %s must be positive", name)
		}
	}
	opt := Options{
		Limits: Limits{
			MaxComplexity: cfg.GraphQLMaxComplexity, MaxDepth: cfg.GraphQLMaxDepth, MaxAliases: cfg.GraphQLMaxAliases,
			MaxRootFields: cfg.GraphQLMaxRootFields, MaxBodyBytes: cfg.GraphQLMaxBodyBytes, MaxTokens: cfg.GraphQLMaxTokens,
		},
		Persisted: PersistedOptions{Mode: mode, Manifest: manifest, MaxQueryBytes: cfg.APQMaxQueryBytes},
		CORS:      CORS{AllowedOrigins: origins},
	}
	store := "memory"
	if mode == ModeAllow && cfg.RedisURL != "" {
		// TLS: rediss:// verified with REDIS_TLS_CA_FILE, REDIS_TLS_CERT_FILE presented.
		ro, err := tlsx.RedisOptions(cfg.RedisURL, tlsx.Files{CA: cfg.RedisCAFile, Cert: cfg.RedisCertFile, Key: cfg.RedisKeyFile}, logger)
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
		shared := NewRedisCache(client, APQKeyPrefix, cfg.APQTTL, logger)
		shared.MaxEntries = cfg.APQMaxEntries
		opt.Persisted.Cache = NewTiered(shared, 1000)
		store = "redis"
	}
	logger.Info("graphql transport", "persistedQueries", string(mode), "manifestOperations", manifest.Len(),
		"apqStore", store, "corsOrigins", strings.Join(origins, ","), "maxComplexity", cfg.GraphQLMaxComplexity,
		"maxDepth", cfg.GraphQLMaxDepth, "maxAliases", cfg.GraphQLMaxAliases, "maxRootFields", cfg.GraphQLMaxRootFields,
		"maxBodyBytes", cfg.GraphQLMaxBodyBytes, "maxTokens", cfg.GraphQLMaxTokens, "introspection", IntrospectionEnabled(cfg))
	return opt, release, nil
}

// IntrospectionEnabled is GRAPHQL_INTROSPECTION when set, else true outside production.
func IntrospectionEnabled(cfg config.Config) bool {
	if cfg.GraphQLIntrospection != nil {
		return *cfg.GraphQLIntrospection
	}
	return !cfg.Production()
}

// SocketOptionsFromConfig are the WebSocket settings of the configuration; the caller
// adds the client key and the rate (internal/platform/overload).
func SocketOptionsFromConfig(cfg config.Config) SocketOptions {
	return SocketOptions{InitTimeout: cfg.SocketInitTimeout, PingInterval: cfg.SocketPingInterval, WriteTimeout: cfg.SocketWriteTimeout,
		MaxPerClient: cfg.SocketsPerClient, MaxSubscriptionsPerClient: cfg.SubscriptionsPerClient}
}
