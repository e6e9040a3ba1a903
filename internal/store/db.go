// Package store is the PostgreSQL adapter (bun over pgx v5): it implements the domain
// ports, owns the single transaction helper, applies the embedded migrations, and maps
// PostgreSQL errors to domain errors.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"

	"github.com/checkout-backend/checkout/migrations"
)

// Options tunes the connection pool.
type Options struct {
	MaxOpenConns int
	MaxIdleConns int
	// QueryHook, when set, is added to the bun.DB (tests count queries with it).
	QueryHook bun.QueryHook
}

// Open connects to PostgreSQL at url through pgx and wraps it in bun.
func Open(ctx context.Context, url string, opt Options) (*bun.DB, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse DATABASE_URL: %w", err)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 5 * time.Second
	}
	sqldb := stdlib.OpenDB(*cfg)
	if opt.MaxOpenConns == 0 {
		opt.MaxOpenConns = 20
	}
	if opt.MaxIdleConns == 0 {
		opt.MaxIdleConns = opt.MaxOpenConns
	}
	sqldb.SetMaxOpenConns(opt.MaxOpenConns)
	sqldb.SetMaxIdleConns(opt.MaxIdleConns)
	sqldb.SetConnMaxIdleTime(5 * time.Minute)
	db := bun.NewDB(sqldb, pgdialect.New())
	if opt.QueryHook != nil {
		db.AddQueryHook(opt.QueryHook)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	return db, nil
}

type txKey struct{}

// InTx runs fn in a transaction: a savepoint when ctx already carries one, and a retry
// (a few times) when PostgreSQL reports a serialization failure or a deadlock.
func InTx(ctx context.Context, db bun.IDB, fn func(ctx context.Context, tx bun.Tx) error) error {
	if tx, ok := ctx.Value(txKey{}).(bun.Tx); ok {
		return tx.RunInTx(ctx, nil, func(ctx context.Context, sp bun.Tx) error { return fn(ctx, sp) })
	}
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		err = db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			return fn(context.WithValue(ctx, txKey{}, tx), tx)
		})
		if !retryable(err) {
			return err
		}
		time.Sleep(time.Duration(attempt+1) * 5 * time.Millisecond)
	}
	return err
}

func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

// PgCode returns the SQLSTATE of a PostgreSQL error, or "".
func PgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// Migrate applies the embedded migrations not applied yet, under an advisory lock so
// several processes may start at once.
func Migrate(ctx context.Context, db *bun.DB) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	const lockID = 7263541
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock(?)", lockID); err != nil {
		return fmt.Errorf("migrate lock: %w", err)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock(?)", lockID)
	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	names, err := fs.Glob(migrations.FS, "*.up.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, name := range names {
		version := strings.TrimSuffix(name, ".up.sql")
		var n int
		if err := conn.QueryRowContext(ctx, "SELECT count(*) FROM schema_migrations WHERE version = ?", version).Scan(&n); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		if n > 0 {
			continue
		}
		body, err := migrations.FS.ReadFile(name)
		if err != nil {
			return err
		}
		err = conn.Raw(func(dc any) error {
			c := dc.(*stdlib.Conn).Conn()
			tx, err := c.Begin(ctx)
			if err != nil {
				return err
			}
			defer tx.Rollback(ctx)
			// Simple protocol: a migration file holds several statements.
			if _, err := tx.Conn().PgConn().Exec(ctx, string(body)).ReadAll(); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version) VALUES ($1)", version); err != nil {
				return err
			}
			return tx.Commit(ctx)
		})
		if err != nil {
			return fmt.Errorf("migration %s: %w", name, err)
		}
	}
	return nil
}

// Ping checks the database answers, for readiness.
func Ping(ctx context.Context, db *sql.DB) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return db.PingContext(ctx)
}

func nowUTC() time.Time { return time.Now().UTC() }
