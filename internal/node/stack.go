package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	toxiclient "github.com/Shopify/toxiproxy/v2/client"
	"github.com/jackc/pgx/v5"
)

// HADatabase is the service's database on the HA stack's PostgreSQL nodes.
const HADatabase = "checkout"

// HAOptions shape the stack UpHA starts.
type HAOptions struct {
	// Dir holds everything (wiped by UpHA when nothing of a previous stack runs there).
	Dir string
	// Bin is the checkout binary the instances run.
	Bin string
	// Instances is the number of `checkout serve` processes (default 3).
	Instances int
	// Detached leaves the stack running when the caller exits (make ha); otherwise every
	// process dies with the caller (cmd/chaos).
	Detached bool
	// ToxiproxyBin, when set, puts a toxiproxy server between the instances and each
	// RabbitMQ node, and between each Patroni member and each etcd member (chaos adds
	// latency and partitions there, and cuts one member off from etcd).
	ToxiproxyBin string
	// Env is more environment for the instances (e.g. the payment provider).
	Env []string
	// Log receives progress lines.
	Log io.Writer
}

// Instance is one `checkout serve` process of an HA stack.
type Instance struct {
	Name string   `json:"name"`
	Addr string   `json:"addr"`
	Pid  int      `json:"pid"`
	Log  string   `json:"log"`
	Env  []string `json:"env"`
	proc *Process
}

// URL is the instance's base URL.
func (i *Instance) URL() string { return "http://" + i.Addr }

// Alive reports whether the instance's process runs.
func (i *Instance) Alive() bool { return i.proc.Alive() }

// Toxiproxy is the proxy server between an HA stack's instances and its broker, and
// between its Patroni members and etcd.
type Toxiproxy struct {
	Pid int    `json:"pid"`
	API string `json:"api"`
	// Proxies are the RabbitMQ nodes' proxies; EtcdProxies[i] are Patroni member i's
	// proxies to the etcd members.
	Proxies     []string   `json:"proxies"`
	EtcdProxies [][]string `json:"etcdProxies,omitempty"`
	proc        *Process
}

// Client talks to the toxiproxy server.
func (x *Toxiproxy) Client() *toxiclient.Client { return toxiclient.NewClient(x.API) }

// HAStack is, on one machine and without Docker, the self-healing deployment the
// operations guide describes, each part a process of its own under one directory:
// three etcd members; three PostgreSQL nodes run by Patroni in strict synchronous mode
// (Patroni elects, promotes and rejoins them: nothing here does); HAProxy sending its
// pg-primary port to the member whose Patroni answers 200 on /primary, its pg-read port
// to any member that serves reads, and balancing the instances by /readyz; PgBouncer in
// transaction pooling mode in front of HAProxy, which the instances' pools go through; a
// three-node RabbitMQ cluster; and checkout instances. A state file records it, so that
// another command can report on it and stop it by process id, and cmd/chaos can kill
// and cut its parts.
type HAStack struct {
	Dir       string `json:"dir"`
	Bin       string `json:"bin"`
	JWTSecret string `json:"jwtSecret"`
	// DatabaseURL is PgBouncer (DATABASE_POOL_MODE=transaction), SessionURL HAProxy's
	// pg-primary port (DATABASE_SESSION_URL: the relay's LISTEN, migrations), ReadURL
	// PgBouncer's read-only entry (HAProxy's pg-read port), APIURL HAProxy in front of
	// the instances, AMQPURL the RabbitMQ nodes (or their proxies).
	DatabaseURL string      `json:"databaseUrl"`
	SessionURL  string      `json:"sessionUrl"`
	ReadURL     string      `json:"readUrl"`
	APIURL      string      `json:"apiUrl"`
	AMQPURL     string      `json:"amqpUrl"`
	RabbitDirs  []string    `json:"rabbitmq"`
	Instances   []*Instance `json:"instances"`
	Toxiproxy   *Toxiproxy  `json:"toxiproxy,omitempty"`
	Detached    bool        `json:"detached"`

	// The parts, and the process ids another command attaches to (LoadHA).
	Etcd          []*EtcdMember `json:"etcd"`
	EtcdPids      []int         `json:"etcdPids"`
	PG            []*Patroni    `json:"patroni"`
	PGSupervisors []int         `json:"patroniPids"`
	HAProxy       *HAProxy      `json:"haproxy"`
	HAProxyPid    int           `json:"haproxyPid"`
	PgBouncer     *PgBouncer    `json:"pgbouncer"`
	PgBouncerPid  int           `json:"pgbouncerPid"`

	// Rabbit are the RabbitMQ nodes.
	Rabbit []*Rabbit `json:"-"`
	log    io.Writer
}

// HAStateFile is where an HA stack records itself under its directory.
const HAStateFile = "stack.json"

// PooledSessionLimits is PgBouncer's connect_query: the session limits an instance sets
// itself on a direct connection (store.Options), which a transaction pooler must set
// for it (docs/operations.md, "Behind PgBouncer").
const PooledSessionLimits = "SET statement_timeout = 30000; SET lock_timeout = 10000; SET idle_in_transaction_session_timeout = 60000; SET jit = off; SET random_page_cost = 1.1"

// UpHA starts the stack and waits until every instance is ready. On error it stops
// what it started.
func UpHA(ctx context.Context, opt HAOptions) (_ *HAStack, err error) {
	if opt.Instances == 0 {
		opt.Instances = 3
	}
	if opt.Log == nil {
		opt.Log = io.Discard
	}
	dir, err := filepath.Abs(opt.Dir)
	if err != nil {
		return nil, err
	}
	if old, err := LoadHA(dir); err == nil && old.anyAlive() {
		return nil, fmt.Errorf("a stack already runs in %s: stop it first (down)", dir)
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	s := &HAStack{Dir: dir, Bin: opt.Bin, JWTSecret: randomHex(24), Detached: opt.Detached, log: opt.Log}
	defer func() {
		if err != nil {
			s.Down()
		}
	}()
	started := time.Now()
	step := func(format string, args ...any) {
		fmt.Fprintf(s.log, "  "+format+" after %s\n", append(args, time.Since(started).Round(100*time.Millisecond))...)
	}
	fmt.Fprintf(s.log, "starting three etcd members...\n")
	etcd, err := LaunchEtcdCluster(ctx, EtcdOptions{Dir: filepath.Join(dir, "etcd"), Detached: opt.Detached})
	if etcd != nil {
		s.Etcd = etcd.Members
	}
	if err != nil {
		return s, fmt.Errorf("etcd: %w", err)
	}
	step("etcd up")
	if opt.ToxiproxyBin != "" {
		if err := s.startToxiproxy(ctx, opt.ToxiproxyBin); err != nil {
			return s, err
		}
	}
	fmt.Fprintf(s.log, "starting three PostgreSQL nodes under Patroni (strict synchronous mode)...\n")
	if err := s.launchPatroni(ctx, 3, etcd.Endpoints()); err != nil {
		return s, err
	}
	leader := s.waitLeader(ctx)
	if leader == nil {
		return s, errors.New("patroni: no leader elected")
	}
	if err := createDatabase(ctx, leader.URL()); err != nil {
		return s, err
	}
	step("PostgreSQL up (leader %s)", leader.Name)
	ports := make([]int, opt.Instances)
	for i := range ports {
		if ports[i], err = FreePort(); err != nil {
			return s, err
		}
	}
	if err := s.startProxies(ctx, ports); err != nil {
		return s, err
	}
	step("HAProxy and PgBouncer up")
	fmt.Fprintf(s.log, "starting a three-node RabbitMQ cluster...\n")
	cluster, err := LaunchRabbitCluster(ctx, 3, RabbitOptions{Dir: filepath.Join(dir, "rabbitmq"), Name: "ha" + randomHex(2), Detached: opt.Detached})
	for _, n := range cluster.Nodes {
		s.Rabbit = append(s.Rabbit, n)
		s.RabbitDirs = append(s.RabbitDirs, n.Dir)
	}
	if err != nil {
		return s, fmt.Errorf("RabbitMQ cluster: %w", err)
	}
	s.AMQPURL = cluster.URL()
	if s.Toxiproxy != nil {
		if err := s.proxyRabbit(); err != nil {
			return s, err
		}
	}
	step("RabbitMQ cluster up")
	if err := s.save(); err != nil {
		return s, err
	}
	if out, err := s.serviceCommand(ctx, "migrate").CombinedOutput(); err != nil {
		return s, fmt.Errorf("checkout migrate: %v: %s", err, out)
	}
	for i, port := range ports {
		in := &Instance{Name: fmt.Sprintf("api%d", i+1), Addr: fmt.Sprintf("127.0.0.1:%d", port),
			Log: filepath.Join(dir, fmt.Sprintf("api%d.log", i+1)), Env: opt.Env}
		s.Instances = append(s.Instances, in)
		if err := s.StartInstance(ctx, in); err != nil {
			return s, err
		}
	}
	step("%d instances ready", len(s.Instances))
	return s, s.save()
}

// launchPatroni starts n Patroni members at once, each on etcd (or, with toxiproxy, on
// proxies of its own to each etcd member, which chaos cuts to isolate it).
func (s *HAStack) launchPatroni(ctx context.Context, n int, etcd []string) error {
	type result struct {
		i   int
		p   *Patroni
		err error
	}
	// Every proxy is made before any member picks its ports.
	endpoints := make([][]string, n)
	for i := range n {
		endpoints[i] = etcd
		if s.Toxiproxy == nil {
			continue
		}
		endpoints[i] = nil
		s.Toxiproxy.EtcdProxies = append(s.Toxiproxy.EtcdProxies, nil)
		for j, e := range etcd {
			name := fmt.Sprintf("pg%d-etcd%d", i+1, j+1)
			listen, err := s.proxy(name, e)
			if err != nil {
				return err
			}
			s.Toxiproxy.EtcdProxies[i] = append(s.Toxiproxy.EtcdProxies[i], name)
			endpoints[i] = append(endpoints[i], listen)
		}
	}
	results := make(chan result, n)
	for i := range n {
		opt := PatroniOptions{Dir: filepath.Join(s.Dir, "pg"), Name: fmt.Sprintf("pg%d", i+1), Scope: "checkout",
			Etcd: endpoints[i], EtcdProxies: s.Toxiproxy != nil, Synchronous: true, Detached: s.Detached, Settings: map[string]string{"max_connections": "100"}}
		go func() {
			p, err := LaunchPatroni(ctx, opt)
			results <- result{i, p, err}
		}()
	}
	s.PG = make([]*Patroni, n)
	var err error
	for range n {
		r := <-results
		s.PG[r.i] = r.p
		if r.err != nil && err == nil {
			err = fmt.Errorf("patroni %d: %w", r.i+1, r.err)
		}
	}
	var nodes []*Patroni
	for _, p := range s.PG {
		if p != nil {
			nodes = append(nodes, p)
		}
	}
	s.PG = nodes
	return err
}

// waitLeader waits up to a minute for a member to answer 200 on /primary.
func (s *HAStack) waitLeader(ctx context.Context) *Patroni {
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline) && ctx.Err() == nil; time.Sleep(200 * time.Millisecond) {
		if p := s.Primary(); p != nil {
			return p
		}
	}
	return nil
}

// startProxies starts HAProxy (PostgreSQL's primary and read ports by Patroni's checks,
// the instances on ports by /readyz) and PgBouncer in front of HAProxy.
func (s *HAStack) startProxies(ctx context.Context, apiPorts []int) error {
	var primary, read, api []HAProxyServer
	for _, p := range s.PG {
		srv := HAProxyServer{Name: p.Name, Addr: p.HostPort(), CheckAddr: strings.TrimPrefix(p.RestURL(), "http://")}
		primary = append(primary, srv)
		read = append(read, srv)
	}
	for i, port := range apiPorts {
		api = append(api, HAProxyServer{Name: fmt.Sprintf("api%d", i+1), Addr: fmt.Sprintf("127.0.0.1:%d", port)})
	}
	var err error
	s.HAProxy, err = LaunchHAProxy(ctx, HAProxyOptions{Dir: filepath.Join(s.Dir, "haproxy"), Detached: s.Detached, Frontends: []HAProxyFrontend{
		{Name: "pg-primary", Check: "/primary", Servers: primary},
		{Name: "pg-read", Check: "/read-only", Servers: read},
		{Name: "checkout", HTTP: true, Check: "/readyz", Servers: api}}})
	if err != nil {
		return fmt.Errorf("haproxy: %w", err)
	}
	_, readPort, _ := strings.Cut(s.HAProxy.Addr("pg-read"), ":")
	s.PgBouncer, err = LaunchPgBouncer(ctx, PgBouncerOptions{Dir: filepath.Join(s.Dir, "pgbouncer"), Server: s.HAProxy.Addr("pg-primary"),
		PoolSize: 40, ConnectQuery: PooledSessionLimits, Detached: s.Detached,
		Databases: map[string]string{HADatabase + "_ro": fmt.Sprintf("host=127.0.0.1 port=%s dbname=%s", readPort, HADatabase)}})
	if err != nil {
		return fmt.Errorf("pgbouncer: %w", err)
	}
	s.DatabaseURL = s.PgBouncer.URLFor(HADatabase)
	s.ReadURL = s.PgBouncer.URLFor(HADatabase + "_ro")
	s.SessionURL = fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable", s.HAProxy.Addr("pg-primary"), HADatabase)
	s.APIURL = "http://" + s.HAProxy.Addr("checkout")
	return nil
}

func createDatabase(ctx context.Context, url string) error {
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	_, err = c.Exec(ctx, "CREATE DATABASE "+HADatabase)
	return err
}

func (s *HAStack) startToxiproxy(ctx context.Context, bin string) error {
	x, err := launchToxiproxy(ctx, bin, s.Dir, s.Detached)
	s.Toxiproxy = x
	return err
}

// launchToxiproxy starts a toxiproxy server (bin) on a free loopback port, logging
// into dir, and waits until it answers.
func launchToxiproxy(ctx context.Context, bin, dir string, detached bool) (*Toxiproxy, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-host", "127.0.0.1", "-port", fmt.Sprint(port))
	x := &Toxiproxy{API: fmt.Sprintf("http://127.0.0.1:%d", port)}
	if x.proc, err = Start(cmd, StartOptions{Log: filepath.Join(dir, "toxiproxy.log"), Detached: detached}); err != nil {
		return nil, fmt.Errorf("toxiproxy: %w", err)
	}
	x.Pid = x.proc.Pid
	return x, x.proc.WaitReady(ctx, "toxiproxy", 50*time.Millisecond, nil, func() bool {
		_, err := x.Client().Proxies()
		return err == nil
	})
}

// Stop kills the toxiproxy server.
func (x *Toxiproxy) Stop() {
	if x != nil && x.proc != nil {
		x.proc.Kill()
	}
}

// proxy makes a toxiproxy proxy to upstream on a port the kernel picks (no race with
// the ports other parts pick meanwhile) and returns its address.
func (s *HAStack) proxy(name, upstream string) (string, error) {
	p, err := s.Toxiproxy.Client().CreateProxy(name, "127.0.0.1:0", upstream)
	if err != nil {
		return "", fmt.Errorf("toxiproxy: %w", err)
	}
	return p.Listen, nil
}

// proxyRabbit puts a proxy in front of each RabbitMQ node; the instances dial those.
func (s *HAStack) proxyRabbit() error {
	var urls []string
	for i, n := range s.Rabbit {
		name := fmt.Sprintf("rabbitmq%d", i+1)
		listen, err := s.proxy(name, n.HostPort())
		if err != nil {
			return err
		}
		s.Toxiproxy.Proxies = append(s.Toxiproxy.Proxies, name)
		urls = append(urls, "amqp://guest:guest@"+listen+"/")
	}
	s.AMQPURL = strings.Join(urls, ",")
	return nil
}

// serviceCommand is the checkout binary with the stack's configuration.
func (s *HAStack) serviceCommand(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, s.Bin, args...)
	cmd.Env = append(os.Environ(), "DATABASE_URL="+s.DatabaseURL, "DATABASE_POOL_MODE=transaction", "DATABASE_SESSION_URL="+s.SessionURL,
		"DATABASE_READ_URL="+s.ReadURL, "AMQP_URL="+s.AMQPURL,
		"JWT_SECRET="+s.JWTSecret, "APP_ENV=development", "REDIS_URL=", "AMQP_QUORUM_SIZE=3")
	return cmd
}

// StartInstance starts (or restarts) an instance and waits until it is ready.
func (s *HAStack) StartInstance(ctx context.Context, in *Instance) error {
	cmd := s.serviceCommand(context.Background(), "serve")
	cmd.Env = append(append(cmd.Env, "HTTP_ADDR="+in.Addr), in.Env...)
	var err error
	if in.proc, err = Start(cmd, StartOptions{Log: in.Log, Detached: s.Detached}); err != nil {
		return fmt.Errorf("%s: %w", in.Name, err)
	}
	in.Pid = in.proc.Pid
	if err := in.proc.WaitReady(ctx, in.Name, 100*time.Millisecond, func() string { return LogTail(in.Log, 3) },
		func() bool { return ready(in.URL()) == http.StatusOK }); err != nil {
		return err
	}
	return s.save()
}

// KillInstance SIGKILLs an instance and everything it started.
func (s *HAStack) KillInstance(in *Instance) {
	in.proc.Kill()
}

func ready(base string) int {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(base + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (s *HAStack) save() error {
	s.EtcdPids, s.PGSupervisors = nil, nil
	for _, m := range s.Etcd {
		s.EtcdPids = append(s.EtcdPids, m.Pid())
	}
	for _, p := range s.PG {
		s.PGSupervisors = append(s.PGSupervisors, p.SupervisorPid())
	}
	if s.HAProxy != nil {
		s.HAProxyPid = s.HAProxy.Pid()
	}
	if s.PgBouncer != nil {
		s.PgBouncerPid = s.PgBouncer.Pid()
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(s.Dir, HAStateFile), b, 0o600)
}

// LoadHA reads the stack recorded in dir and attaches to its processes that still run.
func LoadHA(dir string) (*HAStack, error) {
	b, err := os.ReadFile(filepath.Join(dir, HAStateFile))
	if err != nil {
		return nil, err
	}
	s := &HAStack{log: io.Discard}
	if err := json.Unmarshal(b, s); err != nil {
		return nil, err
	}
	for i, m := range s.Etcd {
		if i < len(s.EtcdPids) {
			m.proc, _ = Attach(s.EtcdPids[i], m.Dir)
		}
	}
	for i, p := range s.PG {
		if i < len(s.PGSupervisors) {
			p.Attach(s.PGSupervisors[i])
		}
	}
	if s.HAProxy != nil {
		s.HAProxy.proc, _ = Attach(s.HAProxyPid, s.HAProxy.Dir)
	}
	if s.PgBouncer != nil {
		s.PgBouncer.proc, _ = Attach(s.PgBouncerPid, s.PgBouncer.Dir)
	}
	for _, d := range s.RabbitDirs {
		n, _ := OpenRabbit(d)
		if n != nil {
			s.Rabbit = append(s.Rabbit, n)
		}
	}
	for _, in := range s.Instances {
		in.proc, _ = Attach(in.Pid, "serve")
	}
	if s.Toxiproxy != nil {
		s.Toxiproxy.proc, _ = Attach(s.Toxiproxy.Pid, "-port "+strings.TrimPrefix(s.Toxiproxy.API, "http://127.0.0.1:"))
	}
	return s, nil
}

func (s *HAStack) anyAlive() bool {
	for _, m := range s.Etcd {
		if m.Alive() {
			return true
		}
	}
	for _, p := range s.PG {
		if p.Alive() || p.PostmasterPid() != 0 {
			return true
		}
	}
	for _, n := range s.Rabbit {
		if n.Alive() {
			return true
		}
	}
	for _, in := range s.Instances {
		if in.Alive() {
			return true
		}
	}
	return (s.HAProxy != nil && s.HAProxy.Alive()) || (s.PgBouncer != nil && s.PgBouncer.Alive()) ||
		(s.Toxiproxy != nil && s.Toxiproxy.proc.Alive())
}

// Down stops everything by process id: the instances first (SIGTERM: they drain), then
// the poolers, the brokers and the PostgreSQL members (clean shutdowns, Patroni stopping
// its PostgreSQL), then etcd and the proxy. Files stay.
func (s *HAStack) Down() {
	for _, in := range s.Instances {
		in.proc.Stop(syscall.SIGTERM, 30*time.Second)
	}
	if s.PgBouncer != nil {
		s.PgBouncer.Kill()
	}
	if s.HAProxy != nil {
		s.HAProxy.Kill()
	}
	var wg sync.WaitGroup
	for _, n := range s.Rabbit {
		wg.Add(1)
		go func() { defer wg.Done(); n.Stop() }()
	}
	for _, p := range s.PG {
		wg.Add(1)
		go func() { defer wg.Done(); p.Stop() }()
	}
	wg.Wait()
	for _, m := range s.Etcd {
		m.Kill()
	}
	if s.Toxiproxy != nil {
		s.Toxiproxy.proc.Kill()
	}
}

// Primary is the Patroni member that holds the leader key and runs a primary (answers
// 200 on /primary), or nil.
func (s *HAStack) Primary() *Patroni {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, p := range s.PG {
		if p.IsPrimary(ctx) {
			return p
		}
	}
	return nil
}

// Status describes each process of the stack, one line each.
func (s *HAStack) Status() []string {
	var out []string
	state := func(alive bool) string {
		if alive {
			return "running"
		}
		return "DOWN"
	}
	for _, m := range s.Etcd {
		out = append(out, fmt.Sprintf("etcd      %-6s %-8s pid %-7d %s", m.Name, state(m.Alive()), pidOf(m.Alive(), m.Pid), m.ClientURL))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, p := range s.PG {
		role := "DOWN"
		if st, err := p.Status(ctx); err == nil {
			role = st.Role
			if st.SyncStandby {
				role += "/sync"
			}
		}
		out = append(out, fmt.Sprintf("patroni   %-6s %-8s pid %-7d %s (REST %s)", p.Name, role, pidOf(p.Alive(), p.SupervisorPid), p.URLFor(HADatabase), p.RestURL()))
	}
	if h := s.HAProxy; h != nil {
		out = append(out, fmt.Sprintf("haproxy          %-8s pid %-7d pg-primary %s, pg-read %s, checkout %s", state(h.Alive()), pidOf(h.Alive(), h.Pid),
			h.Addr("pg-primary"), h.Addr("pg-read"), h.Addr("checkout")))
	}
	if b := s.PgBouncer; b != nil {
		out = append(out, fmt.Sprintf("pgbouncer        %-8s pid %-7d %s (transaction pooling; admin: psql -h 127.0.0.1 -p %d -U postgres pgbouncer -c 'SHOW POOLS')",
			state(b.Alive()), pidOf(b.Alive(), b.Pid), s.DatabaseURL, b.Port))
	}
	for _, n := range s.Rabbit {
		out = append(out, fmt.Sprintf("rabbitmq  %-6s %-8s pid %-7d %s (node %s)", "", state(n.Alive()), pidOf(n.Alive(), n.Pid), n.URL(), n.Name))
	}
	if x := s.Toxiproxy; x != nil {
		out = append(out, fmt.Sprintf("toxiproxy        %-8s pid %-7d %s", state(x.proc.Alive()), x.Pid, x.API))
	}
	for _, in := range s.Instances {
		st := state(in.Alive())
		if in.Alive() {
			st = fmt.Sprintf("ready=%d", ready(in.URL()))
		}
		out = append(out, fmt.Sprintf("checkout  %-6s %-8s pid %-7d %s/graphql (log %s)", in.Name, st, in.Pid, in.URL(), in.Log))
	}
	return out
}

func pidOf(alive bool, pid func() int) int {
	if !alive {
		return 0
	}
	return pid()
}
