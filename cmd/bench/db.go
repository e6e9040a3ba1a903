package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// openDB connects the bench's own small pool (probes read through it).
func openDB(ctx context.Context, dbURL string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return nil, fmt.Errorf("database URL: %w", err)
	}
	cfg.MaxConns = 4
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to PostgreSQL at %s: %w", describeDB(dbURL), err)
	}
	return pool, nil
}

var dbNameRe = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

func validDBName(s string) bool { return dbNameRe.MatchString(s) }

// recreateDatabase drops and creates the database name on the server of serverURL
// (connecting to its "postgres" database) and returns serverURL pointed at it.
func recreateDatabase(ctx context.Context, serverURL, name string) (string, error) {
	cfg, err := pgx.ParseConfig(serverURL)
	if err != nil {
		return "", fmt.Errorf("database URL: %w", err)
	}
	switch name {
	case cfg.Database, "postgres", "template0", "template1":
		return "", fmt.Errorf("refusing to drop database %q: choose another -bench-db", name)
	}
	benchURL, err := withDatabase(serverURL, name)
	if err != nil {
		return "", err
	}
	cfg.Database = "postgres"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return "", fmt.Errorf("connect to PostgreSQL at %s: %w", describeDB(serverURL), err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	ident := pgx.Identifier{name}.Sanitize()
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
		return "", fmt.Errorf("drop database %s: %w", name, err)
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+ident); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	return benchURL, nil
}

// withDatabase returns a PostgreSQL URL or key=value DSN naming another database.
func withDatabase(dsn, name string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", fmt.Errorf("database URL: %w", err)
		}
		u.Path = "/" + name
		u.RawPath = ""
		return u.String(), nil
	}
	return dsn + " dbname=" + name, nil // the last dbname wins
}

// describeDB names a database for messages: host, port and database, no credentials.
func describeDB(dsn string) string {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return "(unparsable database URL)"
	}
	return fmt.Sprintf("%s:%d/%s", cfg.Host, cfg.Port, cfg.Database)
}

// checkLoopbackDatabase refuses a database on another machine: the bench drops and
// creates databases, and loads the server.
func checkLoopbackDatabase(dsn string) error {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return fmt.Errorf("database URL: %w", err)
	}
	hosts := []string{cfg.Host}
	for _, f := range cfg.Fallbacks {
		hosts = append(hosts, f.Host)
	}
	for _, h := range hosts {
		if strings.HasPrefix(h, "/") {
			continue // a Unix socket
		}
		if err := checkLoopbackHost(h); err != nil {
			return fmt.Errorf("database %s: %w", describeDB(dsn), err)
		}
	}
	return nil
}

// checkLoopbackURL accepts only http(s) URLs on this machine's loopback interface.
func checkLoopbackURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("-url: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("-url %q: want http://host:port", raw)
	}
	if u.Path != "" && u.Path != "/" {
		return fmt.Errorf("-url %q: give the base URL, without a path (/graphql is added)", raw)
	}
	if err := checkLoopbackHost(u.Hostname()); err != nil {
		return fmt.Errorf("-url: %w", err)
	}
	return nil
}

func checkLoopbackHost(h string) error {
	if h == "localhost" {
		return nil
	}
	if ip := net.ParseIP(h); ip != nil {
		if !ip.IsLoopback() {
			return fmt.Errorf("%s is not a loopback address: the bench only loads this machine", h)
		}
		return nil
	}
	ips, err := net.LookupIP(h)
	if err != nil {
		return fmt.Errorf("resolve %s: %w", h, err)
	}
	if len(ips) == 0 {
		return errors.New("no address for " + h)
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return fmt.Errorf("%s resolves to %s, not a loopback address: the bench only loads this machine", h, ip)
		}
	}
	return nil
}

// querier is a pool or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// countBy runs a query of (key, count) rows into a map.
func countBy(ctx context.Context, q querier, sql string, args ...any) (map[string]int, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	var k string
	var n int
	_, err = pgx.ForEachRow(rows, []any{&k, &n}, func() error { out[k] = n; return nil })
	return out, err
}
