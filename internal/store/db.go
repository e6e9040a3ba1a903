// Package store is the PostgreSQL adapter (bun over pgx v5): it implements the domain
// ports (orders, carts, catalog, payments, partner webhooks), owns the one transaction
// helper (InTx), applies the embedded migrations with bun's migrate package, and maps
// PostgreSQL errors to domain errors. The domain decides; the store loads, applies the
// decision and saves.
//
// The clock is a dependency: each adapter's constructor takes it as its now argument,
// next to the database, and never defaults it; a nil clock panics (a programming
// error). Every time a row carries comes from that clock, never from time.Now or
// PostgreSQL's now().
package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/schema"

	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/pgprep"
)

// mustClock refuses a nil clock: constructor was called without its dependency.
func mustClock(constructor string, now func() time.Time) {
	if now == nil {
		panic("store: " + constructor + " with a nil clock")
	}
}

// Options tunes the connection pool and the session limits of its connections.
type Options struct {
	// MaxOpenConns is the pool's size (required: DB_MAX_CONNS and the API's pools).
	MaxOpenConns int
	// MaxIdleConns is how many idle connections are kept (default MaxOpenConns).
	MaxIdleConns int
	// StatementTimeout, LockTimeout and IdleInTxTimeout are set on every connection
	// (statement_timeout, lock_timeout, idle_in_transaction_session_timeout): a query, a
	// lock wait or a transaction left open cannot hold a connection for ever. Zero takes
	// the defaults (30s, 10s, 60s); a negative value turns one off (migrations).
	StatementTimeout time.Duration
	LockTimeout      time.Duration
	IdleInTxTimeout  time.Duration
	// QueryHook, when set, is added to the bun.DB (tracing: TraceHook; tests count
	// queries with it).
	QueryHook bun.QueryHook
	// Pooled says the URL is a transaction pooler (PgBouncer, pool_mode = transaction:
	// DATABASE_POOL_MODE): each transaction may run on another server connection, so no
	// session state is set. The session limits above are then not sent (PgBouncer
	// refuses startup parameters it does not know): the pooler's connect_query, or the
	// role's settings, carry them (docs/operations.md, "Behind PgBouncer"). Nor are
	// the hot statements prepared (pgprep): a prepared statement would not follow the
	// transactions to their server connections. Nothing else changes: every statement
	// goes in the simple protocol and every lock the service takes is transaction-scoped.
	Pooled bool
	// GenericPlans plans the hot statements (pgprep) once per connection, generically
	// (plan_cache_mode = force_generic_plan; the URL may say otherwise). With PostgreSQL's
	// default (auto) a statement over an array parameter is planned on every call: its
	// generic plan guesses ten elements and looks dearer than a custom plan that knows
	// there is one. Both the checkout's pool and the relay's and workers' ask for it. A
	// generic plan guesses a batch of ten: each hot statement that joins a batch to a
	// table every order grows (orders, reservations) also names the batch's keys as
	// = ANY(?), which such a plan can take through the table's index, and the session's
	// random_page_cost makes that index the cheaper way from about a thousand rows on
	// (TestHotStatements_SettlementsGenericPlansLookRowsUpByIndex_InAYoungShop). Below
	// that a plan may scan the table, which costs little at that size, and the next
	// ANALYZE re-plans it.
	GenericPlans bool
}

// Session limits of every pool unless Options say otherwise.
const (
	DefaultStatementTimeout = 30 * time.Second
	DefaultLockTimeout      = 10 * time.Second
	DefaultIdleInTxTimeout  = 60 * time.Second
)

func sessionParam(d, def time.Duration) string {
	switch {
	case d < 0:
		return "0"
	case d == 0:
		d = def
	}
	return strconv.FormatInt(d.Milliseconds(), 10)
}

// Open connects to PostgreSQL at url through pgx and wraps it in bun. The URL may list
// several hosts (with target_session_attrs=read-write pgx finds the writable one).
func Open(ctx context.Context, url string, opt Options) (*bun.DB, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse DATABASE_URL: %w", err)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 5 * time.Second
	}
	// bun writes the arguments into the SQL text, so every statement is new to pgx: with
	// its default statement cache each would cost a Parse round trip and a cache
	// eviction. The simple protocol sends it in one.
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	params := map[string]string{
		// Every statement here is short and indexed: JIT compilation only adds its tens of
		// milliseconds when a misestimate (stale statistics) pushes a plan's cost over
		// jit_above_cost. The URL may turn it back on (jit=on).
		"jit": "off",
		// The hot statements are planned once per connection (GenericPlans), and such a
		// plan lives until the next ANALYZE of its tables. With PostgreSQL's default
		// random_page_cost (4, a spinning disk's) a batch's generic plan reads a table of
		// a few thousand orders whole rather than look its rows up by index, and keeps
		// doing so as the table grows until statistics catch up. 1.1 is an SSD's (or a
		// working set in memory, as the tables an order touches are): index lookups are
		// chosen from about a thousand rows on. The URL may say otherwise
		// (random_page_cost=4).
		"random_page_cost":                    "1.1",
		"statement_timeout":                   sessionParam(opt.StatementTimeout, DefaultStatementTimeout),
		"lock_timeout":                        sessionParam(opt.LockTimeout, DefaultLockTimeout),
		"idle_in_transaction_session_timeout": sessionParam(opt.IdleInTxTimeout, DefaultIdleInTxTimeout),
	}
	if opt.GenericPlans {
		// Only prepared statements follow it (and the foreign-key checks' own, generic
		// already): every other statement is sent as text and planned as it comes.
		params["plan_cache_mode"] = "force_generic_plan"
	}
	if opt.Pooled {
		params = nil
	}
	for k, v := range params {
		if _, set := cfg.RuntimeParams[k]; !set {
			cfg.RuntimeParams[k] = v
		}
	}
	if opt.MaxOpenConns <= 0 {
		// The service's pool sizes are configuration (DB_MAX_CONNS and the API's): the
		// caller says, so the default is written once, in config.
		return nil, fmt.Errorf("store: open with MaxOpenConns %d: the pool needs a size", opt.MaxOpenConns)
	}
	var hooks []stdlib.OptionOpenDB
	var dialect schema.Dialect = pgdialect.New()
	if !opt.Pooled {
		// A direct connection keeps the hot statements prepared (pgprep): behind a
		// transaction pooler a prepared statement would not follow the transactions.
		hooks = append(hooks, stdlib.OptionAfterConnect(pgprep.AfterConnect), stdlib.OptionResetSession(pgprep.ResetSession))
		dialect = pgprep.Dialect()
	}
	sqldb := stdlib.OpenDB(*cfg, hooks...)
	if opt.MaxIdleConns == 0 {
		opt.MaxIdleConns = opt.MaxOpenConns
	}
	sqldb.SetMaxOpenConns(opt.MaxOpenConns)
	sqldb.SetMaxIdleConns(opt.MaxIdleConns)
	sqldb.SetConnMaxIdleTime(5 * time.Minute)
	db := bun.NewDB(sqldb, dialect)
	if opt.QueryHook != nil {
		db = db.WithQueryHook(opt.QueryHook)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	return db, nil
}

// maxTxAttempts bounds how often InTx runs a transaction that PostgreSQL aborted with a
// serialization failure or a deadlock.
const maxTxAttempts = 5

// InTx runs fn in a transaction on db, the executor the caller passes: when db is a
// pool (*bun.DB) a new transaction, retried a few times when PostgreSQL reports a
// serialization failure or a deadlock; when db is already a transaction (bun.Tx) a
// savepoint inside it, rolled back alone when fn fails (the outer transaction decides
// about retries). Errors of an unreachable database are marked checkout.ErrUnavailable.
func InTx(ctx context.Context, db bun.IDB, fn func(ctx context.Context, tx bun.Tx) error) error {
	switch d := db.(type) {
	case bun.Tx:
		return mapErr(savepoint(ctx, d, fn))
	case *bun.Tx:
		return mapErr(savepoint(ctx, *d, fn))
	}
	var err error
	for attempt := 0; attempt < maxTxAttempts; attempt++ {
		err = db.RunInTx(ctx, nil, fn)
		if !retryable(err) {
			return mapErr(err)
		}
		select {
		case <-ctx.Done():
			return mapErr(err)
		case <-time.After(time.Duration(attempt+1) * 5 * time.Millisecond):
		}
	}
	return mapErr(err)
}

func savepoint(ctx context.Context, tx bun.Tx, fn func(ctx context.Context, tx bun.Tx) error) error {
	sp, err := tx.BeginTx(ctx, nil) // on a bun.Tx, BeginTx makes a savepoint
	if err != nil {
		return err
	}
	if err := fn(ctx, sp); err != nil {
		if rerr := sp.Rollback(); rerr != nil {
			return errors.Join(err, rerr)
		}
		return err
	}
	return sp.Commit()
}

func retryable(err error) bool {
	code := PgCode(err)
	return code == "40001" || code == "40P01"
}

// PgCode returns the SQLSTATE of a PostgreSQL error, or "".
func PgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// mapErr marks the errors of a database that is unreachable or too slow right now
// (connection refused or reset, timeouts, the server shutting down, too many
// connections) as checkout.ErrUnavailable, keeping the cause in the chain.
func mapErr(err error) error {
	if err == nil || errors.Is(err, checkout.ErrUnavailable) || !unavailable(err) {
		return err
	}
	return fmt.Errorf("%w: %w", checkout.ErrUnavailable, err)
}

// unavailable adds to checkout.IsUnavailable (deadlines, network errors) what only the
// database driver and PostgreSQL say: a connection lost or refused, the server shutting
// down, too many connections, a timeout of the session.
func unavailable(err error) bool {
	var ce *pgconn.ConnectError
	switch {
	case checkout.IsUnavailable(err):
		return true
	case errors.Is(err, driver.ErrBadConn), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, sql.ErrConnDone):
		return true
	case errors.As(err, &ce):
		return true
	case pgconn.SafeToRetry(err), pgconn.Timeout(err):
		return true
	}
	code := PgCode(err)
	// Class 08: connection exception; 57P01-03: shutting down or starting; 53300: too
	// many connections; 57014: statement_timeout; 55P03: lock_timeout; 25P03: idle in
	// transaction timeout.
	return strings.HasPrefix(code, "08") || code == "57P01" || code == "57P02" || code == "57P03" ||
		code == "53300" || code == "57014" || code == "55P03" || code == "25P03"
}

// Ping checks the database answers, for readiness.
func Ping(ctx context.Context, db *sql.DB) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return db.PingContext(ctx)
}
