package node

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// PgBouncerOptions choose the pooler LaunchPgBouncer or StartPgBouncer makes.
type PgBouncerOptions struct {
	// Dir holds the pooler: pgbouncer.ini, pgbouncer.log. StartPgBouncer defaults it to a
	// t.TempDir(); LaunchPgBouncer requires it.
	Dir string
	// Server is the PostgreSQL server every database is pooled to, host:port (the "*"
	// entry: a client's database name is the server's).
	Server string
	// Databases are more entries, name -> "host=... port=... dbname=..." (a read-only
	// name pooled to the replicas' port, say); the ConnectQuery is added to each.
	Databases map[string]string
	// Port is the loopback port; 0 picks a free one.
	Port int
	// PoolMode is transaction (default), session or statement.
	PoolMode string
	// PoolSize is default_pool_size: server connections per database and user (default 20).
	PoolSize int
	// MaxClientConn is max_client_conn (default 2000).
	MaxClientConn int
	// Detached leaves the pooler running when the caller exits (make ha).
	Detached bool
	// ConnectQuery runs on every new server connection before a client gets it: where
	// the session limits go that a transaction pooler does not take from its clients
	// (statement_timeout and the like; docs/operations.md, "Behind PgBouncer").
	ConnectQuery string
}

// PgBouncer is a running (or stopped) PgBouncer. Every database name a client asks for
// is pooled to the same name on the server (the "*" fallback entry), as user postgres
// (auth_type any: the client's user name is ignored, loopback only).
type PgBouncer struct {
	server
	Port     int
	Dir      string
	bin      string
	cred     *syscall.Credential
	detached bool
}

// StartPgBouncer runs a pooler for t, killed at cleanup; where pgbouncer is not
// installed it skips t (fails it when CI is set).
func StartPgBouncer(t testing.TB, opt PgBouncerOptions) *PgBouncer {
	t.Helper()
	opt.Detached = false
	return forTest(t, "PgBouncer", &opt.Dir, time.Minute, func(ctx context.Context) (*PgBouncer, error) { return LaunchPgBouncer(ctx, opt) })
}

// LaunchPgBouncer writes the pooler's configuration under opt.Dir, starts it (as the
// postgres OS user when this process is root: pgbouncer refuses root) and waits until
// it accepts connections.
func LaunchPgBouncer(ctx context.Context, opt PgBouncerOptions) (*PgBouncer, error) {
	if opt.Dir == "" || opt.Server == "" {
		return nil, fmt.Errorf("node: PgBouncerOptions.Dir and Server are required")
	}
	host, port, err := net.SplitHostPort(opt.Server)
	if err != nil {
		return nil, fmt.Errorf("node: PgBouncerOptions.Server: %w", err)
	}
	connectQuery := ""
	if opt.ConnectQuery != "" {
		connectQuery = " connect_query='" + strings.ReplaceAll(opt.ConnectQuery, "'", "''") + "'"
	}
	entries := fmt.Sprintf("* = host=%s port=%s user=postgres%s\n", host, port, connectQuery)
	names := make([]string, 0, len(opt.Databases))
	for name := range opt.Databases {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		entries += fmt.Sprintf("%s = %s user=postgres%s\n", name, opt.Databases[name], connectQuery)
	}
	bin, err := LookBinary("pgbouncer", "/usr/sbin")
	if err != nil {
		return nil, fmt.Errorf("%w (Debian package pgbouncer; scripts/services.sh --need-tools installs it)", err)
	}
	dir, err := filepath.Abs(opt.Dir)
	if err != nil {
		return nil, err
	}
	b := &PgBouncer{Port: opt.Port, Dir: dir, bin: bin, detached: opt.Detached}
	if b.cred, err = postgresDir(dir); err != nil {
		return nil, err
	}
	if b.Port == 0 {
		if b.Port, err = FreePort(); err != nil {
			return nil, err
		}
	}
	if opt.PoolMode == "" {
		opt.PoolMode = "transaction"
	}
	if opt.PoolSize == 0 {
		opt.PoolSize = 20
	}
	if opt.MaxClientConn == 0 {
		opt.MaxClientConn = 2000
	}
	ini := fmt.Sprintf(`; node: a PgBouncer on loopback for tests
[databases]
%s
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = any
pool_mode = %s
default_pool_size = %d
max_client_conn = %d
admin_users = postgres
stats_users = postgres
; a server that refused a login (restarting, failing over) is tried again after 1s, not 15s
server_login_retry = 1
; pgx sends none of these, but other drivers do
ignore_startup_parameters = extra_float_digits
logfile = %s
`, entries, b.Port, opt.PoolMode, opt.PoolSize, opt.MaxClientConn, b.LogPath())
	conf := filepath.Join(dir, "pgbouncer.ini")
	if err := os.WriteFile(conf, []byte(ini), 0o644); err != nil {
		return nil, err
	}
	log := b.LogPath()
	if err := os.WriteFile(log, nil, 0o644); err != nil {
		return nil, err
	}
	if b.cred != nil {
		if err := os.Chown(log, int(b.cred.Uid), int(b.cred.Gid)); err != nil {
			return nil, err
		}
	}
	return b, b.start(ctx)
}

func (b *PgBouncer) start(ctx context.Context) error {
	cmd := exec.Command(b.bin, filepath.Join(b.Dir, "pgbouncer.ini"))
	cmd.Dir = b.Dir
	if b.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: b.cred}
	}
	var err error
	if b.proc, err = Start(cmd, StartOptions{Log: filepath.Join(b.Dir, "pgbouncer.out"), Detached: b.detached}); err != nil {
		return fmt.Errorf("start pgbouncer: %w", err)
	}
	return b.proc.WaitReady(ctx, "pgbouncer", 50*time.Millisecond, func() string { return LogTail(b.LogPath(), 5) },
		func() bool { return dialable(b.HostPort()) })
}

// Restart starts a killed or stopped pooler again on the same configuration and port;
// its clients' connections were lost with it, and they reconnect.
func (b *PgBouncer) Restart(ctx context.Context) error {
	if b.Alive() {
		return fmt.Errorf("pgbouncer in %s is running", b.Dir)
	}
	return b.start(ctx)
}

// LogPath is the pooler's log file.
func (b *PgBouncer) LogPath() string { return filepath.Join(b.Dir, "pgbouncer.log") }

// HostPort is the pooler's address, 127.0.0.1:port.
func (b *PgBouncer) HostPort() string { return "127.0.0.1:" + strconv.Itoa(b.Port) }

// URLFor is a DSN for database db through the pooler.
func (b *PgBouncer) URLFor(db string) string {
	return fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable", b.HostPort(), db)
}
