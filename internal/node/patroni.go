package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
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

// PatroniOptions choose the member LaunchPatroni makes (and, for LaunchPatroniCluster,
// every member).
type PatroniOptions struct {
	// Dir holds one directory per member, Dir/<name>: patroni.yml, patroni.log (Patroni's
	// and its PostgreSQL's output), data/. StartPatroniCluster defaults it to a
	// t.TempDir(); LaunchPatroni requires it.
	Dir string
	// Name is the member's name (its application_name on the leader, which
	// synchronous_standby_names lists); default "pg<port>". LaunchPatroniCluster names
	// its members Name1, Name2... (default pg1, pg2...).
	Name string
	// Scope is the cluster's name, the etcd key prefix its members share; default "pgha".
	Scope string
	// Etcd are the etcd (3.x, v3 API) client addresses, 127.0.0.1:port (EtcdCluster.Endpoints).
	Etcd []string
	// Synchronous turns on strict synchronous mode (synchronous_mode and
	// synchronous_mode_strict): a commit returns once a synchronous standby has it, and
	// with none, writes block instead of going asynchronous. Only that standby may then be
	// promoted, so an acknowledged commit survives the leader's loss.
	Synchronous bool
	// Settings are more PostgreSQL parameters (name -> value), in every member's
	// postgresql.parameters.
	Settings map[string]string
	// Detached leaves the member running when the calling process exits (scripts);
	// StartPatroniCluster ignores it.
	Detached bool
	// TTL, LoopWait and RetryTimeout are Patroni's ttl, loop_wait and retry_timeout in
	// seconds (bootstrap.dcs); defaults 10, 2 and 4. The leader key is on an etcd lease of
	// TTL seconds that the leader renews every LoopWait: a killed leader's key is gone at
	// most TTL seconds after the kill (measured here: 10 s), the standbys watching it
	// start the race at once, and the winner is promoted and takes writes within half a
	// second more, which leaves writes resuming within 15 s with room to spare. A shorter
	// TTL would be faster, but Patroni needs LoopWait + 2*RetryTimeout <= TTL (2 + 8 = 10):
	// a leader whose etcd calls keep failing must give up (after RetryTimeout, retried
	// once) and demote itself before its key can expire and another member be promoted.
	// RetryTimeout is also how long an etcd on a busy two-core machine may take to answer
	// before a healthy leader steps down; 4 s leaves it room, and LoopWait 2 keeps the
	// members' polling of PostgreSQL and etcd cheap.
	TTL, LoopWait, RetryTimeout int
	// EtcdProxies says Etcd are proxies in front of the members (toxiproxy): Patroni then
	// talks to them only (use_proxies), instead of discovering the members' own client
	// URLs from the cluster and going around the proxies.
	EtcdProxies bool
	// ConnectVia, when set, is asked once per member for the address the other members
	// (and pg_rewind) reach its PostgreSQL at, given its name and real address: a proxy
	// in front of it, so a test can hold the replication between a leader and its
	// standbys. Default: the real address.
	ConnectVia func(name, addr string) (string, error)
}

// Patroni is one Patroni member and the PostgreSQL 15 server it manages. Patroni and
// PostgreSQL run as the postgres OS user (both refuse root) under a small supervisor
// process that stays the parent of the postmaster Patroni starts (and detaches from
// itself), so that it is reaped and killed with the member; everything is stopped by
// process id.
type Patroni struct {
	// Name is the member's name; Scope the cluster's.
	Name, Scope string
	// PGPort is PostgreSQL's loopback port, RestPort Patroni's REST API one.
	PGPort, RestPort int
	// Dir is the member's directory, DataDir PostgreSQL's data directory in it.
	Dir, DataDir string
	// ConnectAddr is where the other members reach its PostgreSQL (ConnectVia).
	ConnectAddr string
	cred        *syscall.Credential
	python      string
	bin         string
	detached    bool
	// procs are the supervisors started for this member (the last one runs the current
	// Patroni; an earlier one may still hold a postmaster a restarted Patroni adopted).
	procs []*Process
}

// StartPatroniCluster launches a cluster of n members for t on etcd (opt.Etcd defaults to
// etcd.Endpoints()) under t.TempDir() (unless opt.Dir is set), and kills every member at
// cleanup, on every path. When Patroni or PostgreSQL is missing or the cluster cannot
// start, the test is skipped with one line saying why (failed when CI is set).
func StartPatroniCluster(t testing.TB, n int, etcd *EtcdCluster, opt PatroniOptions) *PatroniCluster {
	t.Helper()
	opt.Detached = false
	if len(opt.Etcd) == 0 && etcd != nil {
		opt.Etcd = etcd.Endpoints()
	}
	return forTest(t, "Patroni cluster", &opt.Dir, 3*time.Minute, func(ctx context.Context) (*PatroniCluster, error) {
		return LaunchPatroniCluster(ctx, n, opt)
	})
}

// PatroniCluster is the members of one Patroni cluster.
type PatroniCluster struct {
	Nodes []*Patroni
}

// LaunchPatroniCluster launches n members at once (the first to take etcd's initialize key
// runs initdb, the others clone it with pg_basebackup) and waits until each one's
// PostgreSQL runs. The returned cluster holds every member started, also on error.
func LaunchPatroniCluster(ctx context.Context, n int, opt PatroniOptions) (*PatroniCluster, error) {
	if opt.Name == "" {
		opt.Name = "pg"
	}
	type result struct {
		i   int
		p   *Patroni
		err error
	}
	results := make(chan result, n)
	for i := range n {
		o := opt
		o.Name = fmt.Sprintf("%s%d", opt.Name, i+1)
		go func() {
			p, err := LaunchPatroni(ctx, o)
			results <- result{i, p, err}
		}()
	}
	nodes := make([]*Patroni, n)
	var err error
	for range n {
		r := <-results
		nodes[r.i] = r.p
		if r.err != nil && err == nil {
			err = r.err
		}
	}
	c := &PatroniCluster{}
	for _, p := range nodes {
		if p != nil {
			c.Nodes = append(c.Nodes, p)
		}
	}
	return c, err
}

// Kill kills every member (Patroni and PostgreSQL).
func (c *PatroniCluster) Kill() {
	for _, p := range c.Nodes {
		p.Kill()
	}
}

// URLFor lists every member with target_session_attrs=read-write (as MultiHostURL):
// pgx finds the leader, as it would through HAProxy's primary port.
func (c *PatroniCluster) URLFor(db string) string {
	hosts := make([]string, len(c.Nodes))
	for i, p := range c.Nodes {
		hosts[i] = p.HostPort()
	}
	return multiHostURL(db, hosts)
}

// Leader is the member that answers 200 on /primary (holds the leader key and runs a
// primary), nil when none does.
func (c *PatroniCluster) Leader(ctx context.Context) *Patroni {
	for _, p := range c.Nodes {
		if p.IsPrimary(ctx) {
			return p
		}
	}
	return nil
}

// LaunchPatroni writes the member's patroni.yml under opt.Dir/<name>, starts Patroni and
// waits until the PostgreSQL it manages runs (GET /health answers 200): a new cluster's
// first member has run initdb and leads, a later one has cloned a member and streams. On
// an error after Patroni started, the returned member is non-nil so it can be killed.
func LaunchPatroni(ctx context.Context, opt PatroniOptions) (*Patroni, error) {
	if opt.Dir == "" || len(opt.Etcd) == 0 {
		return nil, errors.New("node: PatroniOptions.Dir and Etcd are required")
	}
	bin, err := LookBinary("patroni")
	if err != nil {
		return nil, fmt.Errorf("%w (Debian package patroni)", err)
	}
	python, err := interpreter(bin)
	if err != nil {
		return nil, err
	}
	pgBin, err := PostgresBinDir()
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(opt.Dir)
	if err != nil {
		return nil, err
	}
	p := &Patroni{Name: opt.Name, Scope: opt.Scope, python: python, bin: bin, detached: opt.Detached}
	if p.PGPort, err = FreePort(); err != nil {
		return nil, err
	}
	if p.RestPort, err = FreePort(); err != nil {
		return nil, err
	}
	if p.Name == "" {
		p.Name = fmt.Sprintf("pg%d", p.PGPort)
	}
	if p.Scope == "" {
		p.Scope = "pgha"
	}
	p.ConnectAddr = p.HostPort()
	if opt.ConnectVia != nil {
		if p.ConnectAddr, err = opt.ConnectVia(p.Name, p.HostPort()); err != nil {
			return nil, err
		}
	}
	p.Dir = filepath.Join(dir, p.Name)
	p.DataDir = filepath.Join(p.Dir, "data")
	if p.cred, err = postgresDir(p.Dir); err != nil {
		return nil, err
	}
	if opt.TTL == 0 {
		opt.TTL = 10
	}
	if opt.LoopWait == 0 {
		opt.LoopWait = 2
	}
	if opt.RetryTimeout == 0 {
		opt.RetryTimeout = 4
	}
	if opt.LoopWait+2*opt.RetryTimeout > opt.TTL {
		return nil, fmt.Errorf("node: PatroniOptions: loop_wait %d + 2*retry_timeout %d exceeds ttl %d", opt.LoopWait, opt.RetryTimeout, opt.TTL)
	}
	if err := os.WriteFile(p.ConfigPath(), []byte(p.config(opt, pgBin)), 0o644); err != nil {
		return nil, err
	}
	return p, p.start(ctx)
}

// config is the member's patroni.yml.
func (p *Patroni) config(opt PatroniOptions, pgBin string) string {
	q := strconv.Quote
	var b strings.Builder
	fmt.Fprintf(&b, "# node: Patroni member %s of cluster %s, on loopback only\n", p.Name, p.Scope)
	fmt.Fprintf(&b, "scope: %s\nname: %s\n", q(p.Scope), q(p.Name))
	b.WriteString("log:\n  level: INFO\n")
	rest := fmt.Sprintf("127.0.0.1:%d", p.RestPort)
	fmt.Fprintf(&b, "restapi:\n  listen: %s\n  connect_address: %s\n", q(rest), q(rest))
	// etcd 3.4 serves the v3 API only (v2 is off by default): Patroni's etcd3 client, over
	// etcd's JSON gateway.
	b.WriteString("etcd3:\n  protocol: http\n")
	if opt.EtcdProxies {
		b.WriteString("  use_proxies: true\n")
	}
	b.WriteString("  hosts:\n")
	for _, h := range opt.Etcd {
		fmt.Fprintf(&b, "  - %s\n", q(h))
	}
	hba := []string{"host all all 127.0.0.1/32 trust", "host replication all 127.0.0.1/32 trust"}
	b.WriteString("bootstrap:\n  dcs:\n")
	fmt.Fprintf(&b, "    ttl: %d\n    loop_wait: %d\n    retry_timeout: %d\n", opt.TTL, opt.LoopWait, opt.RetryTimeout)
	b.WriteString("    maximum_lag_on_failover: 1048576\n")
	fmt.Fprintf(&b, "    synchronous_mode: %t\n    synchronous_mode_strict: %t\n", opt.Synchronous, opt.Synchronous)
	// pg_rewind (which needs wal_log_hints) lets a killed old leader that got ahead of
	// the new one rejoin as its standby by itself, without a new base backup.
	// No replication slots: Patroni 3.0 creates the standbys' slots on a new leader only in
	// the HA cycle after its promotion, so the surviving standby could not stream (nor
	// a strict synchronous commit return) for up to loop_wait more; wal_keep_size keeps
	// the WAL a standby needs instead.
	b.WriteString("    postgresql:\n      use_pg_rewind: true\n      use_slots: false\n      parameters:\n        wal_log_hints: \"on\"\n        wal_keep_size: \"256MB\"\n")
	b.WriteString("  initdb:\n  - encoding: UTF8\n  - locale: C\n  - no-sync\n")
	b.WriteString("  pg_hba:\n")
	for _, l := range hba {
		fmt.Fprintf(&b, "  - %s\n", q(l))
	}
	pg := fmt.Sprintf("127.0.0.1:%d", p.PGPort)
	b.WriteString("postgresql:\n")
	fmt.Fprintf(&b, "  listen: %s\n  connect_address: %s\n", q(pg), q(p.ConnectAddr))
	fmt.Fprintf(&b, "  data_dir: %s\n  bin_dir: %s\n  pgpass: %s\n", q(p.DataDir), q(pgBin), q(filepath.Join(p.Dir, "pgpass")))
	b.WriteString("  use_pg_rewind: true\n")
	// Trust on loopback: no passwords. The replication user is created at bootstrap.
	b.WriteString("  authentication:\n    superuser:\n      username: postgres\n    replication:\n      username: replicator\n")
	// A spread checkpoint would hold a clone's pg_basebackup for many seconds.
	b.WriteString("  basebackup:\n  - checkpoint: fast\n  - no-sync\n")
	b.WriteString("  pg_hba:\n")
	for _, l := range hba {
		fmt.Fprintf(&b, "  - %s\n", q(l))
	}
	params := map[string]string{
		// TCP only: a socket path under a test's directory can exceed the 107 bytes
		// allowed. Patroni connects over TCP (use_unix_socket is off).
		"unix_socket_directories": "",
		"wal_log_hints":           "on",
		"wal_keep_size":           "256MB",
		"hot_standby":             "on",
		// A standby that lost its primary retries (and finds the new one) this often.
		"wal_retrieve_retry_interval": "500ms",
		// A killed server process loses nothing the kernel holds; nodes are never power-cut.
		"fsync":           "off",
		"log_line_prefix": "%m [%p] %a ",
	}
	for k, v := range opt.Settings {
		params[k] = v
	}
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	b.WriteString("  parameters:\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "    %s: %s\n", k, q(params[k]))
	}
	b.WriteString("watchdog:\n  mode: \"off\"\n")
	return b.String()
}

// supervisor runs a command (Patroni) as its child and becomes the parent of every
// process orphaned under it (PR_SET_CHILD_SUBREAPER): Patroni starts the postmaster
// through a process that exits at once, and waits for a stopped postmaster to be gone,
// which a zombie never is; the supervisor reaps it. It exits with the command's status
// once nothing runs under it. Given this process's pid (not "-"), it kills everything
// under it when this process dies (PR_SET_PDEATHSIG): a test binary killed by its
// timeout leaves no postmaster behind. Arguments: parent pid or "-", pid file of the
// command, command...
const supervisor = `
import ctypes, os, signal, subprocess, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER

def descendants():
    kids = {}
    for d in os.listdir('/proc'):
        if not d.isdigit():
            continue
        try:
            with open('/proc/' + d + '/stat') as f:
                ppid = int(f.read().rsplit(')', 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(d))
    out, queue = [], [os.getpid()]
    while queue:
        for c in kids.get(queue.pop(), ()):
            out.append(c)
            queue.append(c)
    return out

def kill_all(*_):
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        for pid in descendants():
            try:
                os.kill(pid, sig)
            except OSError:
                pass
    os._exit(1)

parent, pidfile, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
if parent != '-':
    signal.signal(signal.SIGTERM, kill_all)
    libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != int(parent):
        kill_all()
child = subprocess.Popen(cmd)
with open(pidfile + '.tmp', 'w') as f:
    f.write(str(child.pid))
os.rename(pidfile + '.tmp', pidfile)
code = 1
while True:
    try:
        pid, status = os.wait()
    except ChildProcessError:
        break
    if pid == child.pid:
        code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
`

// start runs Patroni (under a new supervisor) and waits until its PostgreSQL runs.
func (p *Patroni) start(ctx context.Context) error {
	os.Remove(p.pidFile())
	parent := strconv.Itoa(os.Getpid())
	if p.detached {
		parent = "-"
	}
	cmd := exec.Command(p.python, "-c", supervisor, parent, p.pidFile(), p.bin, p.ConfigPath())
	cmd.Dir = p.Dir
	cmd.Env = append(cleanEnv("PG", "PATRONI_", "HOME="), "HOME="+p.Dir)
	if p.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	}
	proc, err := Start(cmd, StartOptions{Log: p.LogPath(), Detached: p.detached})
	if err != nil {
		return fmt.Errorf("start patroni %s: %w", p.Name, err)
	}
	p.procs = append(p.procs, proc)
	for {
		if !p.Alive() {
			return fmt.Errorf("patroni %s exited; log: %s", p.Name, LogTail(p.LogPath(), 5))
		}
		if p.Healthy(ctx) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("patroni %s: postgres not running: %w; log: %s", p.Name, ctx.Err(), LogTail(p.LogPath(), 5))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// interpreter is the Python that runs the script bin (its #! line), so that the supervisor
// runs on the system's Python rather than one of root's own on PATH (which the postgres
// user may not even reach).
func interpreter(bin string) (string, error) {
	b, err := os.ReadFile(bin)
	if err != nil {
		return "", err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	if f := strings.Fields(strings.TrimPrefix(line, "#!")); strings.HasPrefix(line, "#!") && len(f) == 1 && filepath.IsAbs(f[0]) {
		return f[0], nil
	}
	return LookBinary("python3", "/usr/bin")
}

func (p *Patroni) pidFile() string { return filepath.Join(p.Dir, "patroni.pid") }

// patroniPid is the running Patroni's process id, 0 while the supervisor has not
// recorded it yet.
func (p *Patroni) patroniPid() int {
	b, err := os.ReadFile(p.pidFile())
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// Alive reports whether Patroni runs (its PostgreSQL may run without it).
func (p *Patroni) Alive() bool {
	if len(p.procs) == 0 {
		return false
	}
	sup := p.procs[len(p.procs)-1]
	if !sup.Alive() {
		return false
	}
	pid := p.patroniPid()
	return pid == 0 || Running(pid)
}

// PostmasterPid is the process id in the data directory's postmaster.pid when that
// process runs and is this member's postmaster, else 0.
func (p *Patroni) PostmasterPid() int {
	pm := p.postmaster()
	if pm == nil {
		return 0
	}
	return pm.Pid
}

func (p *Patroni) postmaster() *Process {
	b, err := os.ReadFile(filepath.Join(p.DataDir, "postmaster.pid"))
	if err != nil {
		return nil
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 0 {
		return nil
	}
	// A postmaster.pid a killed server left may name a recycled pid: only a process whose
	// command line names this data directory is taken.
	pm, err := Attach(pid, p.DataDir)
	if err != nil {
		return nil
	}
	return pm
}

// KillAll crashes the member as a lost machine would: Patroni, its postmaster and every
// PostgreSQL process get SIGKILL together (the postmaster is frozen first, so it neither
// notices Patroni's death nor serves anything in between). Killing PostgreSQL alone is no
// failover (Patroni restarts it in place), nor is killing Patroni alone (the leader key
// expires but PostgreSQL keeps accepting writes). KillAll returns once all of it is gone;
// safe to call twice.
func (p *Patroni) KillAll() {
	pm := p.postmaster()
	var pids []int
	if pm != nil {
		syscall.Kill(pm.Pid, syscall.SIGSTOP)
		pids = append(pids, pm.Pid)
	}
	for _, s := range p.procs {
		if s.Alive() { // a reaped supervisor's pid may be another process's by now
			pids = append(pids, Tree(s.Pid)...)
			s.Kill()
		}
	}
	pm.Kill()
	reap(pids)
}

// reap collects the zombies among pids that became this process's children: the
// processes of a killed tree are handed to this process (a child subreaper, see Start)
// as their parents die, and Process.Kill stops waiting for one once it no longer runs,
// which a zombie does not. It gives up after a second.
func reap(pids []int) {
	for deadline := time.Now().Add(time.Second); ; time.Sleep(5 * time.Millisecond) {
		left := 0
		for _, pid := range pids {
			switch state(pid) {
			case 0:
				continue
			case 'Z':
				var ws syscall.WaitStatus
				if ppid(pid) == os.Getpid() {
					if n, _ := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil); n == pid {
						continue
					}
				}
				left++
			}
		}
		if left == 0 || time.Now().After(deadline) {
			return
		}
	}
}

// Kill stops the member at cleanup: KillAll.
func (p *Patroni) Kill() { p.KillAll() }

// Restart starts Patroni again on the same configuration, data directory and ports, and
// waits until its PostgreSQL runs. A killed old leader is then brought back by Patroni
// alone: crash recovery, pg_rewind when it got ahead of the new leader, and streaming
// from it as a standby.
func (p *Patroni) Restart(ctx context.Context) error {
	if p.Alive() {
		return fmt.Errorf("patroni %s is running", p.Name)
	}
	return p.start(ctx)
}

// ConfigPath is the member's patroni.yml.
func (p *Patroni) ConfigPath() string { return filepath.Join(p.Dir, "patroni.yml") }

// LogPath is the log of Patroni and of the PostgreSQL it runs.
func (p *Patroni) LogPath() string { return filepath.Join(p.Dir, "patroni.log") }

// HostPort is PostgreSQL's address, 127.0.0.1:port.
func (p *Patroni) HostPort() string { return fmt.Sprintf("127.0.0.1:%d", p.PGPort) }

// URL is a DSN for the postgres user on database postgres.
func (p *Patroni) URL() string { return p.URLFor("postgres") }

// URLFor is a DSN for the postgres user on database db.
func (p *Patroni) URLFor(db string) string {
	return fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable", p.HostPort(), db)
}

// RestURL is Patroni's REST API, http://127.0.0.1:port.
func (p *Patroni) RestURL() string { return fmt.Sprintf("http://127.0.0.1:%d", p.RestPort) }

// PatroniStatus is what GET /patroni reports of a member.
type PatroniStatus struct {
	// State is PostgreSQL's state as Patroni sees it: "running", "starting", "stopped",
	// "crashed", "running custom bootstrap script"...
	State string `json:"state"`
	// Role is "master" (Patroni 3.0's name for the primary) or "replica"; "primary"
	// in later Patroni versions.
	Role string `json:"role"`
	// Timeline is PostgreSQL's timeline.
	Timeline int `json:"timeline"`
	// SyncStandby reports a replica that etcd's sync key names the synchronous standby:
	// in synchronous mode, only it may be promoted.
	SyncStandby bool `json:"sync_standby"`
}

// Status asks Patroni's REST API for the member's status (GET /patroni).
func (p *Patroni) Status(ctx context.Context) (PatroniStatus, error) {
	var s PatroniStatus
	resp, err := p.get(ctx, "/patroni")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

// Role is the member's role from its REST API ("master"/"primary" or "replica"), ""
// when it does not answer.
func (p *Patroni) Role(ctx context.Context) string {
	s, _ := p.Status(ctx)
	return s.Role
}

// IsPrimary reports whether GET /primary answers 200: the member holds the leader key
// and runs a primary.
func (p *Patroni) IsPrimary(ctx context.Context) bool {
	return p.status(ctx, "/primary") == http.StatusOK
}

// Healthy reports whether GET /health answers 200: Patroni runs and so does its PostgreSQL.
func (p *Patroni) Healthy(ctx context.Context) bool { return p.status(ctx, "/health") == http.StatusOK }

func (p *Patroni) status(ctx context.Context, path string) int {
	resp, err := p.get(ctx, path)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// restClient asks REST APIs without keeping connections (members get killed).
var restClient = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func (p *Patroni) get(ctx context.Context, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.RestURL()+path, nil)
	if err != nil {
		return nil, err
	}
	return restClient.Do(req)
}

// SupervisorPid is the process id of the supervisor running the member's current
// Patroni (recorded in a stack's state file), 0 when none was started.
func (p *Patroni) SupervisorPid() int {
	if len(p.procs) == 0 {
		return 0
	}
	return p.procs[len(p.procs)-1].Pid
}

// Attach gives p, read back from a state file another command wrote, the supervisor
// that command started (by its pid, checked against the member's configuration path),
// so that Alive, Stop and KillAll work on it.
func (p *Patroni) Attach(supervisorPid int) error {
	proc, err := Attach(supervisorPid, p.ConfigPath())
	if err != nil {
		return err
	}
	p.procs = []*Process{proc}
	p.cred, _ = postgresUser()
	return nil
}

// Stop shuts the member down cleanly: SIGTERM to Patroni, which stops its PostgreSQL
// (a leader's stop hands nothing over: the others elect one when its key is gone) and
// exits, and the supervisor with it; whatever is left after 60 s is killed.
func (p *Patroni) Stop() {
	if pid := p.patroniPid(); pid > 0 && Running(pid) {
		syscall.Kill(pid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(60 * time.Second)
	for p.SupervisorPid() != 0 && p.procs[len(p.procs)-1].Alive() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	p.KillAll()
}
