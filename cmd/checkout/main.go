// Command checkout is the composition root of the checkout backend: it reads the
// configuration, connects PostgreSQL and RabbitMQ, wires the adapters into the domain,
// and runs the API (serve), database migrations (migrate), the demo catalog (seed) or
// prints a development token (token).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/checkout-backend/checkout/internal/platform/auth"
	"github.com/checkout-backend/checkout/internal/platform/config"
	clog "github.com/checkout-backend/checkout/internal/platform/log"
	"github.com/checkout-backend/checkout/internal/platform/telemetry"
	"github.com/checkout-backend/checkout/internal/store"
)

const usage = `usage: checkout <command> [flags]

commands:
  serve     run the API (and, unless disabled, the outbox relay, workers and sweeper)
  relay     run only the outbox relay
  worker    run only the RabbitMQ workers and the expiry sweeper
  migrate   apply the database migrations (migrate down: undo the last group applied)
  seed      load the demo catalog with stock
  token     print a signed JWT for development: token --sub ID [--roles admin,partner] [--ttl 24h]
  persisted list or verify a persisted query manifest: persisted list|verify [MANIFEST]
  report    analytics report over the Parquet files: report [--dir DIR] [--html FILE] [--since 24h] [--until T]
  certs     make a development CA, server and client certificates: certs dev [--dir DIR]
  shovels   print the rabbitmqctl commands linking this region's broker to the others':
            shovels PEER=AMQP_URI ... (one per other region of REGIONS)
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	logger := slog.New(telemetry.LogHandler(clog.New(os.Stdout, slog.LevelInfo).Handler()))
	slog.SetDefault(logger)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	cmd, args := os.Args[1], os.Args[2:]
	var err error
	switch cmd {
	case "serve", "relay", "worker":
		err = runServe(ctx, logger, cmd, args)
	case "migrate":
		err = runMigrate(ctx, logger, args)
	case "seed":
		err = runSeed(ctx, logger)
	case "token":
		err = runToken(args)
	case "persisted":
		err = runPersisted(args, os.Stdout)
	case "report":
		err = runReport(args, os.Stdout, time.Now)
	case "certs":
		err = runCerts(args, os.Stdout, os.Stderr)
	case "shovels":
		var cfg config.Config
		if cfg, err = config.Load(); err == nil {
			err = runShovels(cfg, args, os.Stdout)
		}
	case "help", "-h", "--help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "checkout: unknown command %q\n\n%s", cmd, usage)
		os.Exit(2)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		logger.Error("checkout failed", "command", cmd, "error", err)
		os.Exit(1)
	}
}

func runMigrate(ctx context.Context, logger *slog.Logger, args []string) error {
	down := len(args) == 1 && args[0] == "down"
	if len(args) > 0 && !down {
		return fmt.Errorf("migrate: unknown argument %q (migrate, or migrate down)", args[0])
	}
	cfg, err := config.Load()
	if err != nil {
		return err
	}
	// A migration may rewrite a large table: no statement timeout here.
	// Behind a transaction pooler the pooler's statement_timeout would hold too; a direct
	// session (DATABASE_SESSION_URL), when there is one, has none.
	url, pooled := cfg.Database.URL, cfg.Database.Pooled()
	if cfg.Database.SessionURL != "" {
		url, pooled = cfg.Database.SessionURL, false
	}
	db, err := store.Open(ctx, url, store.Options{Pooled: pooled, MaxOpenConns: 3, StatementTimeout: -1, IdleInTxTimeout: -1})
	if err != nil {
		return err
	}
	defer db.Close()
	if down {
		undone, err := store.Rollback(ctx, db)
		if err != nil {
			return err
		}
		logger.Info("migrations rolled back", "migrations", undone)
		return nil
	}
	if err := store.Migrate(ctx, db); err != nil {
		return err
	}
	logger.Info("migrations applied")
	return nil
}

func runToken(args []string) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	sub := fs.String("sub", "", "subject: the customer id")
	roles := fs.String("roles", "", "comma-separated roles: admin, partner")
	ttl := fs.Duration("ttl", 24*time.Hour, "lifetime")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *sub == "" {
		return errors.New("token: --sub is required")
	}
	cfg, err := config.Load()
	if err != nil {
		return err
	}
	var rs []string
	for _, r := range strings.Split(*roles, ",") {
		if r = strings.TrimSpace(r); r != "" {
			rs = append(rs, r)
		}
	}
	if *ttl <= 0 || *ttl > cfg.Auth.MaxLifetime {
		return fmt.Errorf("token: --ttl must be positive and at most JWT_MAX_LIFETIME (%v): the service refuses a longer-lived token", cfg.Auth.MaxLifetime)
	}
	// The token carries what the service checks: iat always, iss and aud when set.
	tok, err := auth.SignFor(cfg.Auth.JWTSecret, authOptions(cfg), *sub, rs, *ttl)
	if err != nil {
		return err
	}
	fmt.Println(tok)
	return nil
}
