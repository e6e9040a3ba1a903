package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/99designs/gqlgen/graphql/playground"
	"golang.org/x/sync/errgroup"

	"github.com/checkout-backend/checkout/graph"
	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/platform/auth"
	"github.com/checkout-backend/checkout/internal/platform/config"
	"github.com/checkout-backend/checkout/internal/platform/httpx"
	"github.com/checkout-backend/checkout/internal/store"
)

func runServe(ctx context.Context, logger *slog.Logger, mode string, args []string) error {
	fs := flag.NewFlagSet(mode, flag.ContinueOnError)
	migrate := fs.Bool("migrate", false, "apply migrations before serving")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.Load()
	if err != nil {
		return err
	}
	db, err := store.Open(ctx, cfg.DatabaseURL, store.Options{MaxOpenConns: cfg.DBMaxConns})
	if err != nil {
		return err
	}
	defer db.Close()
	if *migrate {
		if err := store.Migrate(ctx, db); err != nil {
			return err
		}
	}
	orders := store.NewOrders(db, store.LockingReserver{}, time.Now)
	svc, err := checkout.NewService(orders, store.NewCarts(db), cfg.ReservationTTL, time.Now)
	if err != nil {
		return err
	}
	verifier := auth.NewVerifier(cfg.JWTSecret)
	res := &graph.Resolver{Service: svc, Catalog: store.NewCatalog(db), Orders: orders}

	g, ctx := errgroup.WithContext(ctx)
	mux := http.NewServeMux()
	httpx.Health(mux, httpx.Check{Name: "database", Fn: func(ctx context.Context) error { return store.Ping(ctx, db.DB) }})
	mux.Handle("/graphql", graph.Handler(res, graph.HandlerOptions{Logger: logger, Verifier: verifier, Introspection: !cfg.Production()}))
	if !cfg.Production() {
		mux.Handle("GET /{$}", playground.Handler("Checkout GraphQL", "/graphql"))
	}
	srv := &http.Server{
		Addr:              cfg.HTTPAddr,
		Handler:           httpx.RequestID(httpx.Log(logger, mux)),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       120 * time.Second,
	}
	g.Go(func() error {
		logger.Info("serving", "addr", cfg.HTTPAddr, "graphql", "/graphql", "playground", !cfg.Production())
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		logger.Info("shutting down: draining requests")
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	return g.Wait()
}
