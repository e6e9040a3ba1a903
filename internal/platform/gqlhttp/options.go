package gqlhttp

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/checkout-backend/checkout/internal/platform/config"
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
// Redis (shared by every instance). release closes the Redis client.
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
		"GRAPHQL_MAX_BODY_BYTES": cfg.GraphQLMaxBodyBytes,
	} {
		if v <= 0 {
			return Options{}, release, fmt.Errorf("config: %s must be positive", name)
		}
	}
	opt := Options{
		Limits: Limits{
			MaxComplexity: cfg.GraphQLMaxComplexity, MaxDepth: cfg.GraphQLMaxDepth, MaxAliases: cfg.GraphQLMaxAliases,
			MaxRootFields: cfg.GraphQLMaxRootFields, MaxBodyBytes: cfg.GraphQLMaxBodyBytes,
		},
		Persisted: PersistedOptions{Mode: mode, Manifest: manifest},
		CORS:      CORS{AllowedOrigins: origins},
	}
	store := "memory"
	if mode == ModeAllow && cfg.RedisURL != "" {
		ro, err := redis.ParseURL(cfg.RedisURL)
		if err != nil {
			return Options{}, release, fmt.Errorf("config: REDIS_URL: %w", err)
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
		opt.Persisted.Cache = NewTiered(NewRedisCache(client, APQKeyPrefix, DefaultAPQTTL, logger), 1000)
		store = "redis"
	}
	logger.Info("graphql transport", "persistedQueries", string(mode), "manifestOperations", manifest.Len(),
		"apqStore", store, "corsOrigins", strings.Join(origins, ","), "maxComplexity", cfg.GraphQLMaxComplexity,
		"maxDepth", cfg.GraphQLMaxDepth, "maxAliases", cfg.GraphQLMaxAliases, "maxRootFields", cfg.GraphQLMaxRootFields,
		"maxBodyBytes", cfg.GraphQLMaxBodyBytes, "introspection", IntrospectionEnabled(cfg))
	return opt, release, nil
}

// IntrospectionEnabled is GRAPHQL_INTROSPECTION when set, else true outside production.
func IntrospectionEnabled(cfg config.Config) bool {
	if cfg.GraphQLIntrospection != nil {
		return *cfg.GraphQLIntrospection
	}
	return !cfg.Production()
}
