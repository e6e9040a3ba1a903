package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/checkout-backend/checkout/internal/platform/auth"
)

// runEnv is what a workload run, and its probes, work with.
type runEnv struct {
	opts     options
	target   string // the service's base URL
	db       *pgxpool.Pool
	admin    *graphQLClient
	workload *workload
	prefix   string // this run's SKUs start with it
	// customerPrefix starts the ids of this run's customers (the token subjects).
	customerPrefix string
	seed           uint64

	// Set by runWorkload before the probes run.
	catalog []productSpec
	started time.Time // the attack's start
	// interrupted closes when the run is interrupted (Ctrl-C): the probes' context
	// outlives it, so that they still read back, but waits should stop.
	interrupted <-chan struct{}
}

// runWorkload sets up the workload's catalog, runs the probes' Before, the attack, then
// the probes' After, and returns the report. A probe error does not hide the load
// figures: the report comes back with the error.
func runWorkload(ctx context.Context, env runEnv) (*Report, error) {
	w := env.workload
	env.catalog = w.catalog(env.prefix)
	if err := env.admin.createCatalog(ctx, env.catalog); err != nil {
		return nil, err
	}
	if w.run != nil {
		return w.run(ctx, &env)
	}

	// A run's tokens outlive it, within the service's bound on a token's lifetime.
	ttl := auth.DefaultMaxLifetime
	if env.opts.duration > 0 {
		ttl = min(env.opts.duration+time.Hour, auth.DefaultMaxLifetime)
	}
	headers := make([]http.Header, env.opts.customers)
	for i := range headers {
		tok, err := auth.Sign(env.opts.jwtSecret, fmt.Sprintf("%s%04d", env.customerPrefix, i), nil, ttl)
		if err != nil {
			return nil, err
		}
		headers[i] = http.Header{
			"Content-Type":  {"application/json"},
			"Accept":        {acceptHeader},
			"Authorization": {"Bearer " + tok},
		}
	}

	ps := make([]probe, len(probes))
	for i, mk := range probes {
		ps[i] = mk()
		if err := ps[i].Before(ctx, &env); err != nil {
			return nil, fmt.Errorf("probe %s: %w", ps[i].Name(), err)
		}
	}

	env.interrupted = ctx.Done()
	env.started = time.Now()
	stats := attack(ctx, attackPlan{
		name:        w.name,
		url:         env.target + "/graphql",
		duration:    env.opts.duration,
		requests:    env.opts.requests,
		concurrency: env.opts.concurrency,
		rate:        env.opts.rate,
		timeout:     env.opts.timeout,
		progress:    env.opts.progress,
		keyPrefix:   env.prefix,
		headers:     headers,
		items:       lockedItems(w, env.catalog, env.seed),
	}, os.Stderr)
	r := &Report{Workload: w.name, About: w.about, Concurrency: env.opts.concurrency, Rate: env.opts.rate, loadStats: *stats}

	// The probes read back even when interrupted: the check matters most then.
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	for _, p := range ps {
		if err := p.After(pctx, &env, r); err != nil {
			return r, fmt.Errorf("probe %s: %w", p.Name(), err)
		}
	}
	return r, nil
}
