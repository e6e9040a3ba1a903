package store

import (
	"context"
	"fmt"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/migrate"

	"github.com/checkout-backend/checkout/migrations"
)

// migrateLockID is the class of the session advisory lock that serializes migrators:
// bun's own migration lock fails at once when held, this one makes a second process
// wait. The lock's second key is the schema migrated (hashtext(current_schema())): the
// migrations and bun's table live in the connection's schema, so migrators of different
// schemas (the tests, each in a schema of its own) never wait for each other.
const migrateLockID = 7263541

func migrator(db *bun.DB) (*migrate.Migrator, error) {
	ms := migrate.NewMigrations()
	if err := ms.Discover(migrations.FS); err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	return migrate.NewMigrator(db, ms, migrate.WithMarkAppliedOnSuccess(true)), nil
}

// withMigrationLock runs fn holding the migrators' advisory lock, so several processes
// may start and migrate at once. The lock is transaction-scoped, held by a transaction
// of its own left open while fn runs (on other connections), so it works through a
// transaction pooler too: PgBouncer keeps an open transaction on one server connection,
// where a session lock would be taken on one and released on another. The transaction
// turns off its own idle timeout, since a long migration leaves it idle.
func withMigrationLock(ctx context.Context, db *bun.DB, fn func(*migrate.Migrator) error) error {
	m, err := migrator(db)
	if err != nil {
		return err
	}
	lock, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate lock: %w", err)
	}
	defer lock.Rollback()
	if _, err := lock.ExecContext(ctx, "SELECT set_config('idle_in_transaction_session_timeout', '0', true), pg_advisory_xact_lock(?, hashtext(current_schema()))", migrateLockID); err != nil {
		return fmt.Errorf("migrate lock: %w", err)
	}
	if err := m.Init(ctx); err != nil {
		return fmt.Errorf("migrate init: %w", err)
	}
	if err := adoptLegacy(ctx, db, m); err != nil {
		return err
	}
	return fn(m)
}

// Migrate applies the embedded migrations not applied yet.
func Migrate(ctx context.Context, db *bun.DB) error {
	return withMigrationLock(ctx, db, func(m *migrate.Migrator) error {
		if _, err := m.Migrate(ctx); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		return nil
	})
}

// Rollback undoes the last group of applied migrations (the ones one Migrate applied);
// it returns the names it undid, newest first.
func Rollback(ctx context.Context, db *bun.DB) ([]string, error) {
	var names []string
	err := withMigrationLock(ctx, db, func(m *migrate.Migrator) error {
		g, err := m.Rollback(ctx)
		if err != nil {
			return fmt.Errorf("rollback: %w", err)
		}
		for _, mig := range g.Migrations {
			names = append(names, mig.Name+"_"+mig.Comment)
		}
		return nil
	})
	return names, err
}

// adoptLegacy marks as applied, once, the migrations that the earlier hand-written
// runner recorded in schema_migrations ("0001_init", ...), so an existing database
// moves to bun's table without running them again.
func adoptLegacy(ctx context.Context, db *bun.DB, m *migrate.Migrator) error {
	var exists bool
	if err := db.NewRaw("SELECT to_regclass('schema_migrations') IS NOT NULL").Scan(ctx, &exists); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if !exists {
		return nil
	}
	var legacy []string
	if err := db.NewRaw("SELECT version FROM schema_migrations").Scan(ctx, &legacy); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	all, err := m.MigrationsWithStatus(ctx)
	if err != nil {
		return err
	}
	done := map[string]bool{}
	for _, v := range legacy {
		done[v] = true
	}
	for i := range all {
		mig := &all[i]
		if !mig.IsApplied() && done[mig.Name+"_"+mig.Comment] {
			mig.GroupID = 1
			if err := m.MarkApplied(ctx, mig); err != nil {
				return err
			}
		}
	}
	_, err = db.ExecContext(ctx, "DROP TABLE schema_migrations")
	return err
}
