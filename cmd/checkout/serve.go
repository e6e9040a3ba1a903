package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/checkout-backend/checkout/internal/platform/config"
	"github.com/checkout-backend/checkout/internal/platform/metrics"
	"github.com/checkout-backend/checkout/internal/platform/telemetry"
)

// A component is one part of the running service: the stores, the API, the relay,
// the workers, the sweeper, analytics, the HTTP listeners.
type component interface {
	// Run runs until ctx ends (or the component fails, which stops the others).
	Run(ctx context.Context) error
	// Close releases what the component holds, once every component stopped.
	Close() error
}

// parts says which components a process runs.
type parts struct {
	api, relay, workers bool
}

// runServe runs the parts the mode asks for: serve = the API, the relay and the workers
// (the consumers, the sweeper and analytics), relay or workers left out by a flag;
// relay = the outbox relay alone; worker = the workers alone. Every mode serves
// /healthz, /readyz and /metrics.
func runServe(ctx context.Context, logger *slog.Logger, mode string, args []string) error {
	fs := flag.NewFlagSet(mode, flag.ContinueOnError)
	migrate := fs.Bool("migrate", false, "apply migrations before starting")
	noRelay := fs.Bool("no-relay", false, "serve: do not run the outbox relay in this process")
	noWorkers := fs.Bool("no-workers", false, "serve: do not run the workers and sweeper in this process")
	if err := fs.Parse(args); err != nil {
		return err
	}
	p := parts{api: mode == "serve", relay: mode == "relay" || (mode == "serve" && !*noRelay),
		workers: mode == "worker" || (mode == "serve" && !*noWorkers)}

	cfg, err := config.Load()
	if err != nil {
		return err
	}
	if cfg.Debug.GOGC == "" {
		// A checkout allocates little that lives long: collect less often than Go's
		// default; memory is cheaper than the CPU a flash sale needs.
		debug.SetGCPercent(400)
	}
	// Tracing first: the SQL hook and otelhttp take their tracer when they are built, and
	// the outbox stamps trace context on events with the propagator Setup installs.
	stopTracing, err := telemetry.Setup(ctx, telemetry.Options{ServiceName: "checkout",
		Exporter: cfg.Telemetry.TracesExporter, Disabled: cfg.Telemetry.SDKDisabled})
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		stopTracing(sctx)
	}()

	s := &service{cfg: cfg, logger: logger, now: time.Now, mode: mode}
	defer s.close()
	if err := s.build(ctx, p, *migrate); err != nil {
		return err
	}
	return s.run(ctx)
}

// service is the process: what every phase shares, and the components the phases
// built, in order.
type service struct {
	cfg    config.Config
	logger *slog.Logger
	// now is the one clock every part reads.
	now        func() time.Time
	m          *metrics.Metrics // made by the first phase (the edge)
	mode       string
	components []component
	closed     bool
}

// build builds the components in phases: the edge (metrics, logs, TLS), the stores
// (pools, broker, adapters), then the relay, the workers, the sweeper and analytics, the
// API, and last the edge's HTTP listeners, which serve what the others registered. A
// phase that fails closes what it opened; run's caller closes the phases built.
func (s *service) build(ctx context.Context, p parts, migrate bool) error {
	edge, err := newEdge(s)
	if err != nil {
		return err
	}
	s.add(edge) // its listeners are made last (ready), once every phase registered
	st, err := newStores(ctx, s, edge, p, migrate)
	if err != nil {
		return err
	}
	s.add(st)
	if p.relay {
		r, err := newRelay(ctx, s, st)
		if err != nil {
			return err
		}
		s.add(r)
	}
	if p.workers {
		w, err := newWorkers(s, st)
		if err != nil {
			return err
		}
		s.add(w, newSweeper(s, st))
		if s.cfg.Analytics.Sink != "off" {
			a, err := newAnalyticsPart(ctx, s, st)
			if err != nil {
				return err
			}
			s.add(a)
		}
	}
	if p.api {
		a, err := newAPI(ctx, s, st, edge)
		if err != nil {
			return err
		}
		s.add(a)
	}
	edge.ready(p)
	return nil
}

func (s *service) add(cs ...component) { s.components = append(s.components, cs...) }

// run runs every component together until ctx ends or one fails.
func (s *service) run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, c := range s.components {
		g.Go(func() error { return c.Run(ctx) })
	}
	err := g.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// close closes the components in the reverse order of building.
func (s *service) close() {
	if s.closed {
		return
	}
	s.closed = true
	for i := len(s.components) - 1; i >= 0; i-- {
		if err := s.components[i].Close(); err != nil {
			s.logger.Warn("closing", "component", fmt.Sprintf("%T", s.components[i]), "error", err)
		}
	}
}

// closers is the Close of a component that holds several things: each closed in the
// reverse order of opening.
type closers []func() error

func (c *closers) add(f func() error) { *c = append(*c, f) }

// Close closes them all, last opened first.
func (c closers) Close() error {
	var errs []error
	for i := len(c) - 1; i >= 0; i-- {
		errs = append(errs, c[i]())
	}
	return errors.Join(errs...)
}
