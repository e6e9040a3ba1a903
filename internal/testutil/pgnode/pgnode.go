// Package pgnode starts private PostgreSQL 15 servers for tests and scripts: a primary
// (wal_level=replica), streaming standbys made with pg_basebackup -R, synchronous
// replication, promotion, crashes (SIGKILL of the whole server) and TLS. Each node runs
// on a free loopback port under a directory of its own and is stopped by its process id.
//
// Tests call Start, which stops the node at cleanup and skips the test (fails it when CI
// is set) where PostgreSQL cannot run; scripts call Launch with a directory and Detached,
// and later Open that directory to kill, promote or stop the node.
package pgnode

import (
	"bufio"
	"context"
	"encoding/json"
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

	"github.com/checkout-backend/checkout/internal/testutil/nodeproc"
)

// TLS turns ssl on for a node.
type TLS struct {
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

// Options choose the node Launch or Start makes.
type Options struct {
	// Dir holds the node: data/, postgres.log, node.json. Start defaults it to a
	// t.TempDir(); Launch requires it.
	Dir string
	// Name is the node's cluster_name; a standby gives it to its primary as its
	// application_name, which synchronous_standby_names lists. Default "pg<port>".
	Name string
	// Port is the loopback port; 0 picks a free one.
	Port int
	// StandbyOf makes a streaming hot standby of that primary (pg_basebackup -R).
	StandbyOf *Node
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
	TLS *TLS
	// Detached leaves the server running when the calling process exits (scripts);
	// Start ignores it.
	Detached bool
}

// Node is a running (or stopped) PostgreSQL server.
type Node struct {
	// Name is the cluster_name (a standby's application_name on its primary).
	Name string
	// Port is the loopback port it listens on.
	Port int
	// Dir is the node's directory; DataDir its data directory.
	Dir, DataDir string
	// TLS reports whether the node requires TLS.
	TLS  bool
	proc *nodeproc.Process
	bin  string
	cred *syscall.Credential
}

// state is node.json, for scripts that act on a node another command started.
type state struct {
	Name string `json:"name"`
	Port int    `json:"port"`
	Pid  int    `json:"pid"`
	TLS  bool   `json:"tls"`
	Bin  string `json:"bin"`
}

// BinDir finds the PostgreSQL 15 server binaries: PG_BINDIR, pg_config --bindir, or
// /usr/lib/postgresql/15/bin.
func BinDir() (string, error) {
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
	return "", fmt.Errorf("no PostgreSQL server binaries (initdb, postgres) in PG_BINDIR, pg_config --bindir or /usr/lib/postgresql/15/bin: %w", nodeproc.ErrNoBinary)
}

// Start launches a node for t under t.TempDir() (unless opt.Dir is set) and kills it at
// cleanup, on every path. When PostgreSQL is missing or the node cannot start, the test
// is skipped with one line saying why (failed when CI is set).
func Start(t testing.TB, opt Options) *Node {
	t.Helper()
	if opt.Dir == "" {
		opt.Dir = t.TempDir()
	}
	opt.Detached = false
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n, err := Launch(ctx, opt)
	if n != nil {
		t.Cleanup(n.Kill)
	}
	if err != nil {
		nodeproc.Unavailable(t, "pgnode: PostgreSQL node cannot start here: %v", err)
	}
	return n
}

// Launch makes the node's data directory (initdb, or pg_basebackup from StandbyOf),
// starts the server and waits until it accepts connections (a standby: read-only ones).
// On an error after the server started, the returned node is non-nil so it can be killed.
func Launch(ctx context.Context, opt Options) (*Node, error) {
	if opt.Dir == "" {
		return nil, errors.New("pgnode: Options.Dir is required")
	}
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(opt.Dir)
	if err != nil {
		return nil, err
	}
	n := &Node{Name: opt.Name, Port: opt.Port, Dir: dir, DataDir: filepath.Join(dir, "data"), bin: bin, TLS: opt.TLS != nil}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if os.Geteuid() == 0 {
		// initdb and postgres refuse root: the server runs as the postgres OS user.
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root and no postgres OS user to run the server as: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		n.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := nodeproc.OpenAccess(dir); err != nil {
			return nil, err
		}
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
	}
	if n.Port == 0 {
		if n.Port, err = nodeproc.FreePort(); err != nil {
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
# pgnode: a replication-ready primary on loopback only
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
			return nil, fmt.Errorf("pgnode: PrimaryAddr: %w", err)
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
	logf, err := os.OpenFile(n.LogPath(), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := n.command(context.Background(), filepath.Join(bin, "postgres"), args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if opt.Detached {
		pid, err := nodeproc.StartDetached(cmd)
		if err != nil {
			return nil, fmt.Errorf("start postgres: %w", err)
		}
		n.proc, _ = nodeproc.Attach(pid, n.DataDir)
		if n.proc == nil {
			return nil, fmt.Errorf("postgres exited at once: %s", nodeproc.LogTail(n.LogPath(), 3))
		}
	} else {
		if n.proc, err = nodeproc.Start(cmd); err != nil {
			return nil, fmt.Errorf("start postgres: %w", err)
		}
	}
	if err := n.writeState(); err != nil {
		return n, err
	}
	want := "ready"
	if opt.StandbyOf != nil {
		want = "standby"
	}
	return n, n.waitStatus(ctx, want)
}

// Open returns the node another command launched in dir (from its node.json), for
// scripts that kill, promote or stop it; it fails when that server no longer runs.
func Open(dir string) (*Node, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(dir, "node.json"))
	if err != nil {
		return nil, err
	}
	var s state
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, err
	}
	n := &Node{Name: s.Name, Port: s.Port, Dir: dir, DataDir: filepath.Join(dir, "data"), TLS: s.TLS, bin: s.Bin}
	if os.Geteuid() == 0 {
		if u, err := user.Lookup("postgres"); err == nil {
			uid, _ := strconv.Atoi(u.Uid)
			gid, _ := strconv.Atoi(u.Gid)
			n.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		}
	}
	n.proc, err = nodeproc.Attach(s.Pid, n.DataDir)
	return n, err
}

func (n *Node) writeState() error {
	b, _ := json.Marshal(state{Name: n.Name, Port: n.Port, Pid: n.proc.Pid, TLS: n.TLS, Bin: n.bin})
	return os.WriteFile(filepath.Join(n.Dir, "node.json"), b, 0o644)
}

// LogPath is the server's log file.
func (n *Node) LogPath() string { return filepath.Join(n.Dir, "postgres.log") }

// HostPort is the node's address, 127.0.0.1:port.
func (n *Node) HostPort() string { return fmt.Sprintf("127.0.0.1:%d", n.Port) }

// URL is a DSN for the postgres user on database postgres (sslmode=require on a TLS node:
// add sslrootcert, sslcert and sslkey as the test needs).
func (n *Node) URL() string { return n.URLFor("postgres") }

// URLFor is a DSN for the postgres user on database db.
func (n *Node) URLFor(db string) string {
	mode := "disable"
	if n.TLS {
		mode = "require"
	}
	return fmt.Sprintf("postgres://postgres@%s/%s?sslmode=%s", n.HostPort(), db, mode)
}

// MultiHostURL is a DSN listing every node's address with
// target_session_attrs=read-write: pgx connects to whichever is the writable primary,
// so a client follows a promotion by reconnecting.
func MultiHostURL(db string, nodes ...*Node) string {
	hosts := make([]string, len(nodes))
	for i, n := range nodes {
		hosts[i] = n.HostPort()
	}
	return fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable&target_session_attrs=read-write", strings.Join(hosts, ","), db)
}

// Pid is the server (postmaster) process id.
func (n *Node) Pid() int { return n.proc.Pid }

// Alive reports whether the server process runs.
func (n *Node) Alive() bool { return n.proc != nil && n.proc.Alive() }

// Kill crashes the node: SIGKILL to the postmaster and every backend at once, as a lost
// machine would. It returns once all of them are gone. Safe to call twice.
func (n *Node) Kill() {
	if n.proc != nil {
		n.proc.Kill()
	}
}

// Stop shuts the node down cleanly (fast shutdown: SIGINT), killing it if it has not
// stopped within 30 seconds.
func (n *Node) Stop() {
	if n.proc != nil {
		n.proc.Stop(syscall.SIGINT, 30*time.Second)
	}
}

// Promote turns a standby into a primary (pg_ctl promote) and waits until it accepts
// writes.
func (n *Node) Promote(ctx context.Context) error {
	if out, err := n.run(ctx, "pg_ctl", "promote", "-D", n.DataDir, "-w", "-t", "60"); err != nil {
		return fmt.Errorf("pg_ctl promote: %v: %s", err, out)
	}
	return n.waitStatus(ctx, "ready")
}

// Status is the server's state from postmaster.pid: "starting", "ready" (accepting
// connections), "standby" (a hot standby accepting read-only ones), "stopping", or ""
// when it does not run.
func (n *Node) Status() string {
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

func (n *Node) waitStatus(ctx context.Context, want string) error {
	for {
		if n.proc != nil && !n.proc.Alive() {
			return fmt.Errorf("postgres %s exited: %s", n.Name, nodeproc.LogTail(n.LogPath(), 3))
		}
		if n.Status() == want {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("postgres %s not %s: %w; log: %s", n.Name, want, ctx.Err(), nodeproc.LogTail(n.LogPath(), 3))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (n *Node) setupTLS(t *TLS) error {
	copies := map[string]string{t.CertFile: "server.crt", t.KeyFile: "server.key"}
	hba := "hostssl all all 127.0.0.1/32 trust\nhostssl replication all 127.0.0.1/32 trust\n"
	if t.ClientCAFile != "" {
		copies[t.ClientCAFile] = "client-ca.crt"
		mode := t.ClientCert
		if mode == "" {
			mode = "verify-ca"
		}
		if mode != "verify-ca" && mode != "verify-full" {
			return fmt.Errorf("pgnode: TLS.ClientCert must be verify-ca or verify-full, not %q", mode)
		}
		hba = fmt.Sprintf("hostssl all all 127.0.0.1/32 trust clientcert=%s\nhostssl replication all 127.0.0.1/32 trust\n", mode)
	}
	for from, to := range copies {
		b, err := os.ReadFile(from)
		if err != nil {
			return fmt.Errorf("pgnode TLS: %w", err)
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
	if err := os.WriteFile(p, []byte("# pgnode: TLS only\n"+hba), 0o600); err != nil {
		return err
	}
	if n.cred != nil {
		return os.Chown(p, int(n.cred.Uid), int(n.cred.Gid))
	}
	return nil
}

// command builds a command that runs as the server's OS user in the node's directory,
// without the caller's PG* environment.
func (n *Node) command(ctx context.Context, path string, args ...string) *exec.Cmd {
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

func (n *Node) run(ctx context.Context, name string, args ...string) ([]byte, error) {
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
