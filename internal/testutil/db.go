// Package testutil holds test helpers: a fresh PostgreSQL schema per test (NewDB), the
// GraphQL API over it (NewAPI), tokens and fixtures. Tests talk to the real servers at
// TEST_DATABASE_URL and AMQP_URL.
package testutil

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"testing"

	"github.com/uptrace/bun"

	"github.com/checkout-backend/checkout/internal/store"
)

// DatabaseURL is the server tests use (a schema per test is made in it).
func DatabaseURL() string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

// RandomID returns n random bytes in hex.
func RandomID(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// DB is a test database: a schema of its own, migrated, dropped at cleanup.
type DB struct {
	*bun.DB
	Schema string
	URL    string
}

// NewDB makes a fresh schema, migrates it and returns a pool whose search_path is it.
func NewDB(t testing.TB, opts ...store.Options) *DB {
	t.Helper()
	return NewDBOn(t, DatabaseURL(), opts...)
}

// NewDBOn is NewDB on the server at serverURL (a private node, or several hosts with
// target_session_attrs=read-write) instead of TEST_DATABASE_URL.
func NewDBOn(t testing.TB, serverURL string, opts ...store.Options) *DB {
	t.Helper()
	ctx := context.Background()
	schema, schemaURL := EmptySchemaOn(t, serverURL)
	opt := store.Options{MaxOpenConns: 8}
	if len(opts) > 0 {
		opt = opts[0]
	}
	db, err := store.Open(ctx, schemaURL, opt)
	if err != nil {
		t.Fatalf("open test db: %v", err)
	}
	t.Cleanup(func() { db.Close() }) // before the schema is dropped (cleanups run last first)
	if err := store.Migrate(ctx, db); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return &DB{DB: db, Schema: schema, URL: schemaURL}
}

// EmptySchemaOn makes a schema of its own on the server at serverURL, not migrated, and
// returns its name and a URL whose search_path is it; the schema is dropped at cleanup.
func EmptySchemaOn(t testing.TB, serverURL string) (schema, schemaURL string) {
	t.Helper()
	ctx := context.Background()
	admin, err := store.Open(ctx, serverURL, store.Options{MaxOpenConns: 1})
	if err != nil {
		t.Fatalf("testutil: PostgreSQL is not reachable at %s: %v; run `make test`, which starts it", serverURL, err)
	}
	schema = "t_" + RandomID(6)
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		admin.Close()
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		if _, err := admin.ExecContext(context.Background(), fmt.Sprintf("DROP SCHEMA %s CASCADE", schema)); err != nil {
			t.Logf("drop schema %s: %v", schema, err)
		}
		admin.Close()
	})
	u, err := url.Parse(serverURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	// The schema's name as application_name: a test that reads pg_stat_activity sees its
	// own sessions (application_name = current_setting('application_name')), not those
	// of the tests running beside it.
	q.Set("application_name", schema)
	u.RawQuery = q.Encode()
	return schema, u.String()
}

// Via opens another pool on db's schema through hostport (a proxy), closed at cleanup.
func (db *DB) Via(t testing.TB, hostport string, opt store.Options) *DB {
	t.Helper()
	u, err := url.Parse(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = hostport
	q := u.Query()
	q.Set("connect_timeout", "2")
	u.RawQuery = q.Encode()
	p, err := store.Open(context.Background(), u.String(), opt)
	if err != nil {
		t.Fatalf("open via %s: %v", hostport, err)
	}
	t.Cleanup(func() { p.Close() })
	return &DB{DB: p, Schema: db.Schema, URL: u.String()}
}

// PostgresHostPort is host:port of the test server.
func PostgresHostPort(t testing.TB) string {
	u, err := url.Parse(DatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	if u.Port() == "" {
		return u.Hostname() + ":5432"
	}
	return u.Host
}

// Count runs a query returning one int (SELECT count(*) ...) on db.
func Count(t testing.TB, db bun.IDB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := db.NewRaw(query, args...).Scan(context.Background(), &n); err != nil {
		t.Fatal(err)
	}
	return n
}
