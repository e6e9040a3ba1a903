package node

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// PostgresTLS turns ssl on for a node.
type PostgresTLS struct {
	// CertFile and KeyFile are the server's certificate and key (PEM).
	CertFile, KeyFile string
	// ClientCAFile, when set, becomes ssl_ca_file and every client connection must present
	// a certificate it signed (pg_hba: hostssl ... clientcert=ClientCert). Replication
	// connections (standbys) need TLS but no client certificate.
	ClientCAFile string
	// ClientCert is "verify-ca" (default: the chain is checked) or "verify-full" (the
	// certificate's CN must also be the user name, postgres).
	ClientCert string
}

// PostgresOptions choose the node LaunchPostgres or StartPostgres makes.
type PostgresOptions struct {
	// Dir holds the node: data/, postgres.log, node.json. StartPostgres defaults it to a
	// t.TempDir(); LaunchPostgres requires it.
	Dir string
	// Name is the node's cluster_name; a standby gives it to its primary as its
	// application_name, which synchronous_standby_names lists. Default "pg<port>".
	Name string
	// Port is the loopback port; 0 picks a free one.
	Port int
	// StandbyOf makes a streaming hot standby of that primary (pg_basebackup -R).
	StandbyOf *Postgres
	// PrimaryAddr is the host:port a standby reaches its primary through, for the base
	// backup and streaming (a proxy between them, to cut or slow replication); default
	// StandbyOf's own address.
	PrimaryAddr string
	// SynchronousStandbys is the primary's synchronous_standby_names, e.g. "FIRST 1
	// (standby)": a commit returns once a listed standby has flushed it. It is set on
	// this node's command line only, so a standby promoted later does not inherit it.
	SynchronousStandbys string
	// Settings are more server parameters (name -> value), on the command line.
	Settings map[string]string
	// TLS turns ssl on; plain connections are then refused.
	TLS *PostgresTLS
	// Detached leaves the server running when the calling process exits (scripts);
	// StartPostgres ignores it.
	Detached bool
}

// Postgres is a running (or stopped) PostgreSQL server.
type Postgres struct {
	server
	// Name is the cluster_name (a standby's application_name on its primary).
	Name string
	// Port is the loopback port it listens on.
	Port int
	// Dir is the node's directory; DataDir its data directory.
	Dir, DataDir string
	// TLS reports whether the node requires TLS.
	TLS  bool
	bin  string
	cred *syscall.Credential
	// args and detached are how the server was started, for Restart.
	args     []string
	detached bool
}

// postgresState is node.json, for scripts that act on a node another command started.
type postgresState struct {
	Name string `json:"name"`
	Port int    `json:"port"`
	Pid  int    `json:"pid"`
	TLS  bool   `json:"tls"`
	Bin  string `json:"bin"`
}

// PostgresBinDir finds the PostgreSQL 15 server binaries: PG_BINDIR, pg_config --bindir, or
// /usr/lib/postgresql/15/bin.
func PostgresBinDir() (string, error) {
	var dirs []string
	if d := os.Getenv("PG_BINDIR"); d != "" {
		dirs = append(dirs, d)
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dirs = append(dirs, strings.TrimSpace(string(out)))
	}
	dirs = append(dirs, "/usr/lib/postgresql/15/bin")
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			if _, err := os.Stat(filepath.Join(d, "postgres")); err == nil {
				return d, nil
			}
		}
	}
	return "", fmt.Errorf("no PostgreSQL server binaries (initdb, postgres) in PG_BINDIR, pg_config --bindir or /usr/lib/postgresql/15/bin: %w", ErrNoBinary)
}

// StartPostgres launches a node for t under t.TempDir() (unless opt.Dir is set) and
// kills it at cleanup, on every path. When PostgreSQL is missing or the node cannot
// start, the test is skipped with one line saying why (failed when CI is set).
func StartPostgres(t testing.TB, opt PostgresOptions) *Postgres {
	t.Helper()
	opt.Detached = false
	return forTest(t, "PostgreSQL node", &opt.Dir, 2*time.Minute, func(ctx context.Context) (*Postgres, error) { return LaunchPostgres(ctx, opt) })
}

// LaunchPostgres makes the node's data directory (initdb, or pg_basebackup from
// StandbyOf), starts the server and waits until it accepts connections (a standby:
// read-only ones). On an error after the server started, the returned node is non-nil
// so it can be killed.
func LaunchPostgres(ctx context.Context, opt PostgresOptions) (*Postgres, error) {
	if opt.Dir == "" {
		return nil, errors.New("node: PostgresOptions.Dir is required")
	}
	bin, err := PostgresBinDir()
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(opt.Dir)
	if err != nil {
		return nil, err
	}
	n := &Postgres{Name: opt.Name, Port: opt.Port, Dir: dir, DataDir: filepath.Join(dir, "data"), bin: bin, TLS: opt.TLS != nil}
	if n.cred, err = postgresDir(dir); err != nil {
		return nil, err
	}
	if n.Port == 0 {
		if n.Port, err = FreePort(); err != nil {
			return nil, err
		}
	}
	if n.Name == "" {
		n.Name = fmt.Sprintf("pg%d", n.Port)
	}
	if opt.StandbyOf == nil {
		if out, err := n.run(ctx, "initdb", "-D", n.DataDir, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync"); err != nil {
			return nil, fmt.Errorf("initdb: %v: %s", err, out)
		}
		conf := `
# node: a replication-ready primary on loopback only
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
wal_level = replica
max_wal_senders = 10
wal_keep_size = '256MB'
hot_standby = on
# A standby that lost its primary retries (and notices a promotion) this often.
wal_retrieve_retry_interval = '500ms'
max_connections = 300
# A killed server process loses nothing the kernel holds; nodes are never power-cut.
fsync = off
log_line_prefix = '%m [%p] %a '
`
		if err := appendFile(filepath.Join(n.DataDir, "postgresql.conf"), conf); err != nil {
			return nil, err
		}
	} else {
		p := opt.StandbyOf
		addr := opt.PrimaryAddr
		if addr == "" {
			addr = p.HostPort()
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("node: PrimaryAddr: %w", err)
		}
		conn := fmt.Sprintf("host=%s port=%s user=postgres", host, port)
		if p.TLS {
			conn += " sslmode=require"
		}
		if out, err := n.run(ctx, "pg_basebackup", "-d", conn, "-D", n.DataDir, "-R", "-X", "stream", "-c", "fast", "--no-sync"); err != nil {
			return nil, fmt.Errorf("pg_basebackup from %s: %v: %s", p.Name, err, out)
		}
	}
	if opt.TLS != nil {
		if err := n.setupTLS(opt.TLS); err != nil {
			return nil, err
		}
	}
	args := []string{"-D", n.DataDir, "-c", "port=" + strconv.Itoa(n.Port), "-c", "cluster_name=" + n.Name}
	if opt.SynchronousStandbys != "" {
		args = append(args, "-c", "synchronous_standby_names="+opt.SynchronousStandbys)
	}
	if opt.TLS != nil {
		args = append(args, "-c", "ssl=on", "-c", "ssl_cert_file="+filepath.Join(n.Dir, "server.crt"),
			"-c", "ssl_key_file="+filepath.Join(n.Dir, "server.key"))
		if opt.TLS.ClientCAFile != "" {
			args = append(args, "-c", "ssl_ca_file="+filepath.Join(n.Dir, "client-ca.crt"))
		}
	}
	keys := make([]string, 0, len(opt.Settings))
	for k := range opt.Settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, "-c", k+"="+opt.Settings[k])
	}
	n.args, n.detached = args, opt.Detached
	return n, n.start(ctx)
}

// start runs the server on n.args and waits until it accepts connections (a standby:
// read-only ones).
func (n *Postgres) start(ctx context.Context) error {
	var err error
	if n.proc, err = Start(n.command(context.Background(), filepath.Join(n.bin, "postgres"), n.args...),
		StartOptions{Log: n.LogPath(), Detached: n.detached}); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	if err := writeState(n.Dir, postgresState{Name: n.Name, Port: n.Port, Pid: n.proc.Pid, TLS: n.TLS, Bin: n.bin}); err != nil {
		return err
	}
	want := "ready"
	if _, err := os.Stat(filepath.Join(n.DataDir, "standby.signal")); err == nil {
		want = "standby"
	}
	return n.waitStatus(ctx, want)
}

// Restart starts a killed or stopped node again on the same data directory, port and
// settings, and waits until it accepts connections. After Kill the server runs crash
// recovery first: what reached its WAL files survives, while commits still in its WAL
// buffers (synchronous_commit = off, not yet written) are lost, as in a power cut.
func (n *Postgres) Restart(ctx context.Context) error {
	if n.Alive() {
		return fmt.Errorf("postgres node %s is running", n.Name)
	}
	if n.args == nil {
		return fmt.Errorf("postgres node %s was not started by this process (OpenPostgres): its arguments are unknown", n.Name)
	}
	return n.start(ctx)
}

// OpenPostgres returns the node another command launched in dir (from its node.json),
// for scripts that kill, promote or stop it; it fails when that server no longer runs.
func OpenPostgres(dir string) (*Postgres, error) {
	var s postgresState
	dir, err := readState(dir, &s)
	if err != nil {
		return nil, err
	}
	n := &Postgres{Name: s.Name, Port: s.Port, Dir: dir, DataDir: filepath.Join(dir, "data"), TLS: s.TLS, bin: s.Bin}
	n.cred, _ = postgresUser()
	n.proc, err = Attach(s.Pid, n.DataDir)
	return n, err
}

// postgresUser is the OS user the server runs as when this process is root (initdb and
// postgres refuse root), nil otherwise.
func postgresUser() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root and no postgres OS user to run the server as: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// LogPath is the server's log file.
func (n *Postgres) LogPath() string { return filepath.Join(n.Dir, "postgres.log") }

// HostPort is the node's address, 127.0.0.1:port.
func (n *Postgres) HostPort() string { return fmt.Sprintf("127.0.0.1:%d", n.Port) }

// URL is a DSN for the postgres user on database postgres (sslmode=require on a TLS node:
// add sslrootcert, sslcert and sslkey as the test needs).
func (n *Postgres) URL() string { return n.URLFor("postgres") }

// URLFor is a DSN for the postgres user on database db.
func (n *Postgres) URLFor(db string) string {
	mode := "disable"
	if n.TLS {
		mode = "require"
	}
	return fmt.Sprintf("postgres://postgres@%s/%s?sslmode=%s", n.HostPort(), db, mode)
}

// MultiHostURL is a DSN listing every node's address with
// target_session_attrs=read-write: pgx connects to whichever is the writable primary,
// so a client follows a promotion by reconnecting.
func MultiHostURL(db string, nodes ...*Postgres) string {
	hosts := make([]string, len(nodes))
	for i, n := range nodes {
		hosts[i] = n.HostPort()
	}
	return multiHostURL(db, hosts)
}

func multiHostURL(db string, hosts []string) string {
	return fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable&target_session_attrs=read-write", strings.Join(hosts, ","), db)
}

// Stop shuts the node down cleanly (fast shutdown: SIGINT), killing it if it has not
// stopped within 30 seconds.
func (n *Postgres) Stop() { n.proc.Stop(syscall.SIGINT, 30*time.Second) }

// Status is the server's state from postmaster.pid: "starting", "ready" (accepting
// connections), "standby" (a hot standby accepting read-only ones), "stopping", or ""
// when it does not run. A postmaster.pid another process wrote (one killed before a
// Restart leaves its own) says "starting" until the running server writes its own.
func (n *Postgres) Status() string {
	if !n.Alive() {
		return ""
	}
	f, err := os.Open(filepath.Join(n.DataDir, "postmaster.pid"))
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for i := 1; sc.Scan(); i++ {
		if i == 1 && strings.TrimSpace(sc.Text()) != strconv.Itoa(n.Pid()) {
			return "starting"
		}
		if i == 8 {
			st := strings.TrimSpace(sc.Text())
			// A hot standby says "ready" too; it is a standby until promotion removes
			// standby.signal.
			if _, err := os.Stat(filepath.Join(n.DataDir, "standby.signal")); st == "ready" && err == nil {
				return "standby"
			}
			return st
		}
	}
	return "starting"
}

func (n *Postgres) waitStatus(ctx context.Context, want string) error {
	return n.proc.WaitReady(ctx, fmt.Sprintf("postgres %s (%s)", n.Name, want), 20*time.Millisecond,
		func() string { return LogTail(n.LogPath(), 3) }, func() bool { return n.Status() == want })
}

func (n *Postgres) setupTLS(t *PostgresTLS) error {
	copies := map[string]string{t.CertFile: "server.crt", t.KeyFile: "server.key"}
	hba := "hostssl all all 127.0.0.1/32 trust\nhostssl replication all 127.0.0.1/32 trust\n"
	if t.ClientCAFile != "" {
		copies[t.ClientCAFile] = "client-ca.crt"
		mode := t.ClientCert
		if mode == "" {
			mode = "verify-ca"
		}
		if mode != "verify-ca" && mode != "verify-full" {
			return fmt.Errorf("node: PostgresTLS.ClientCert must be verify-ca or verify-full, not %q", mode)
		}
		hba = fmt.Sprintf("hostssl all all 127.0.0.1/32 trust clientcert=%s\nhostssl replication all 127.0.0.1/32 trust\n", mode)
	}
	for from, to := range copies {
		b, err := os.ReadFile(from)
		if err != nil {
			return fmt.Errorf("postgres TLS: %w", err)
		}
		p := filepath.Join(n.Dir, to)
		// The key must be private to the server's user.
		if err := os.WriteFile(p, b, 0o600); err != nil {
			return err
		}
		if n.cred != nil {
			if err := os.Chown(p, int(n.cred.Uid), int(n.cred.Gid)); err != nil {
				return err
			}
		}
	}
	p := filepath.Join(n.DataDir, "pg_hba.conf")
	if err := os.WriteFile(p, []byte("# node: TLS only\n"+hba), 0o600); err != nil {
		return err
	}
	if n.cred != nil {
		return os.Chown(p, int(n.cred.Uid), int(n.cred.Gid))
	}
	return nil
}

// command builds a command that runs as the server's OS user in the node's directory,
// without the caller's PG* environment.
func (n *Postgres) command(ctx context.Context, path string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Dir = n.Dir
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") && !strings.HasPrefix(kv, "HOME=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "HOME="+n.Dir)
	if n.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: n.cred}
	}
	return cmd
}

func (n *Postgres) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	return n.command(ctx, filepath.Join(n.bin, name), args...).CombinedOutput()
}

func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteString(text)
	return err
}
