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
	// Instances is the number of `checkout serve` processes (default 2).
	Instances int
	// Detached leaves the stack running when the caller exits (make ha); otherwise every
	// process dies with the caller (cmd/chaos).
	Detached bool
	// ToxiproxyBin, when set, puts a toxiproxy server between the instances and each
	// RabbitMQ node (chaos adds latency and partitions there).
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

// Toxiproxy is the proxy server between an HA stack's instances and its broker.
type Toxiproxy struct {
	Pid     int      `json:"pid"`
	API     string   `json:"api"`
	Proxies []string `json:"proxies"`
	proc    *Process
}

// Client talks to the toxiproxy server.
func (x *Toxiproxy) Client() *toxiclient.Client { return toxiclient.NewClient(x.API) }

// HAStack is, on one machine and without Docker, the replicated deployment the README's
// "Running in production" describes: a PostgreSQL primary and a synchronous standby, a
// three-node RabbitMQ cluster, and checkout service instances sharing them, each a
// process of its own under one directory. A state file records it, so that another
// command can report on it, stop it by process id, or (cmd/chaos) kill, promote and
// restart its parts.
type HAStack struct {
	Dir       string `json:"dir"`
	Bin       string `json:"bin"`
	JWTSecret string `json:"jwtSecret"`
	// DatabaseURL lists both PostgreSQL nodes with target_session_attrs=read-write;
	// ReadURL prefers the standby for catalog reads; AMQPURL lists the RabbitMQ nodes
	// (or their proxies).
	DatabaseURL string      `json:"databaseUrl"`
	ReadURL     string      `json:"readUrl"`
	AMQPURL     string      `json:"amqpUrl"`
	PGDirs      []string    `json:"pg"`
	RabbitDirs  []string    `json:"rabbitmq"`
	Instances   []*Instance `json:"instances"`
	Toxiproxy   *Toxiproxy  `json:"toxiproxy,omitempty"`
	Detached    bool        `json:"detached"`

	// PG are the PostgreSQL nodes (the first started as primary), Rabbit the RabbitMQ ones.
	PG     []*Postgres `json:"-"`
	Rabbit []*Rabbit   `json:"-"`
	log    io.Writer
}

// HAStateFile is where an HA stack records itself under its directory.
const HAStateFile = "stack.json"

// UpHA starts the stack and waits until every instance is ready. On error it stops
// what it started.
func UpHA(ctx context.Context, opt HAOptions) (_ *HAStack, err error) {
	if opt.Instances == 0 {
		opt.Instances = 2
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
	fmt.Fprintf(s.log, "starting PostgreSQL primary and synchronous standby...\n")
	primary, err := LaunchPostgres(ctx, PostgresOptions{Dir: filepath.Join(dir, "pg1"), Name: "pg1", SynchronousStandbys: "pg2", Detached: opt.Detached})
	s.addPG(primary)
	if err != nil {
		return s, fmt.Errorf("PostgreSQL primary: %w", err)
	}
	standby, err := LaunchPostgres(ctx, PostgresOptions{Dir: filepath.Join(dir, "pg2"), Name: "pg2", StandbyOf: primary, Detached: opt.Detached})
	s.addPG(standby)
	if err != nil {
		return s, fmt.Errorf("PostgreSQL standby: %w", err)
	}
	if err := createDatabase(ctx, primary.URL()); err != nil {
		return s, err
	}
	s.DatabaseURL = MultiHostURL(HADatabase, primary, standby)
	s.ReadURL = strings.Replace(MultiHostURL(HADatabase, standby, primary), "target_session_attrs=read-write", "target_session_attrs=prefer-standby", 1)
	fmt.Fprintf(s.log, "  PostgreSQL up after %s\nstarting a three-node RabbitMQ cluster...\n", time.Since(started).Round(100*time.Millisecond))

	cluster, err := LaunchRabbitCluster(ctx, 3, RabbitOptions{Dir: filepath.Join(dir, "rabbitmq"), Name: "ha" + randomHex(2), Detached: opt.Detached})
	for _, n := range cluster.Nodes {
		s.Rabbit = append(s.Rabbit, n)
		s.RabbitDirs = append(s.RabbitDirs, n.Dir)
	}
	if err != nil {
		return s, fmt.Errorf("RabbitMQ cluster: %w", err)
	}
	s.AMQPURL = cluster.URL()
	fmt.Fprintf(s.log, "  RabbitMQ cluster up after %s\n", time.Since(started).Round(100*time.Millisecond))
	if opt.ToxiproxyBin != "" {
		if err := s.startToxiproxy(ctx, opt.ToxiproxyBin); err != nil {
			return s, err
		}
	}
	if err := s.save(); err != nil {
		return s, err
	}
	if out, err := s.serviceCommand(ctx, "migrate").CombinedOutput(); err != nil {
		return s, fmt.Errorf("checkout migrate: %v: %s", err, out)
	}
	for i := range opt.Instances {
		port, err := FreePort()
		if err != nil {
			return s, err
		}
		in := &Instance{Name: fmt.Sprintf("api%d", i+1), Addr: fmt.Sprintf("127.0.0.1:%d", port),
			Log: filepath.Join(dir, fmt.Sprintf("api%d.log", i+1)), Env: opt.Env}
		s.Instances = append(s.Instances, in)
		if err := s.StartInstance(ctx, in); err != nil {
			return s, err
		}
	}
	fmt.Fprintf(s.log, "  %d instances ready after %s\n", len(s.Instances), time.Since(started).Round(100*time.Millisecond))
	return s, s.save()
}

func (s *HAStack) addPG(n *Postgres) {
	if n != nil {
		s.PG = append(s.PG, n)
		s.PGDirs = append(s.PGDirs, n.Dir)
	}
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
	port, err := FreePort()
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, "-host", "127.0.0.1", "-port", fmt.Sprint(port))
	x := &Toxiproxy{API: fmt.Sprintf("http://127.0.0.1:%d", port)}
	if x.proc, err = Start(cmd, StartOptions{Log: filepath.Join(s.Dir, "toxiproxy.log"), Detached: s.Detached}); err != nil {
		return fmt.Errorf("toxiproxy: %w", err)
	}
	x.Pid = x.proc.Pid
	s.Toxiproxy = x
	if err := x.proc.WaitReady(ctx, "toxiproxy", 50*time.Millisecond, nil, func() bool {
		_, err := x.Client().Proxies()
		return err == nil
	}); err != nil {
		return err
	}
	var urls []string
	for i, n := range s.Rabbit {
		port, err := FreePort()
		if err != nil {
			return err
		}
		name := fmt.Sprintf("rabbitmq%d", i+1)
		p, err := x.Client().CreateProxy(name, fmt.Sprintf("127.0.0.1:%d", port), n.HostPort())
		if err != nil {
			return fmt.Errorf("toxiproxy: %w", err)
		}
		x.Proxies = append(x.Proxies, name)
		urls = append(urls, "amqp://guest:guest@"+p.Listen+"/")
	}
	s.AMQPURL = strings.Join(urls, ",")
	return nil
}

// serviceCommand is the checkout binary with the stack's configuration.
func (s *HAStack) serviceCommand(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, s.Bin, args...)
	cmd.Env = append(os.Environ(), "DATABASE_URL="+s.DatabaseURL, "DATABASE_READ_URL="+s.ReadURL, "AMQP_URL="+s.AMQPURL,
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
	for _, d := range s.PGDirs {
		n, _ := OpenPostgres(d)
		if n != nil {
			s.PG = append(s.PG, n)
		}
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
	for _, n := range s.PG {
		if n.Alive() {
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
	return s.Toxiproxy != nil && s.Toxiproxy.proc.Alive()
}

// Down stops everything by process id: the instances first (SIGTERM: they drain), then
// the brokers and the databases (clean shutdowns), then the proxy. Files stay.
func (s *HAStack) Down() {
	for _, in := range s.Instances {
		in.proc.Stop(syscall.SIGTERM, 30*time.Second)
	}
	done := make(chan struct{}, len(s.Rabbit))
	for _, n := range s.Rabbit {
		go func() { n.Stop(); done <- struct{}{} }()
	}
	for range s.Rabbit {
		<-done
	}
	for i := len(s.PG) - 1; i >= 0; i-- {
		s.PG[i].Stop()
	}
	if s.Toxiproxy != nil {
		s.Toxiproxy.proc.Kill()
	}
}

// Primary is the PostgreSQL node that accepts writes, or nil.
func (s *HAStack) Primary() *Postgres {
	for _, n := range s.PG {
		if n.Status() == "ready" {
			return n
		}
	}
	return nil
}

// RebuildStandby does what a failover manager does after a promotion: the dead node's
// slot gets a fresh standby of the new primary (pg_basebackup on the same port, so the
// instances' DATABASE_URL still lists it), and the new primary makes it synchronous.
func (s *HAStack) RebuildStandby(ctx context.Context) error {
	primary := s.Primary()
	if primary == nil {
		return errors.New("no primary")
	}
	for i, n := range s.PG {
		if n.Alive() {
			continue
		}
		dir := n.Dir + "-rebuilt"
		standby, err := LaunchPostgres(ctx, PostgresOptions{Dir: dir, Name: n.Name, Port: n.Port, StandbyOf: primary, Detached: s.Detached})
		if standby != nil {
			s.PG[i], s.PGDirs[i] = standby, standby.Dir
		}
		if err != nil {
			return err
		}
		c, err := pgx.Connect(ctx, primary.URL())
		if err != nil {
			return err
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(ctx, fmt.Sprintf("ALTER SYSTEM SET synchronous_standby_names = '%s'", n.Name)); err != nil {
			return err
		}
		if _, err := c.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
			return err
		}
		return s.save()
	}
	return errors.New("no dead PostgreSQL node to rebuild")
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
	for _, n := range s.PG {
		role := n.Status()
		if role == "ready" {
			role = "primary"
		}
		if role == "" {
			role = "DOWN"
		}
		out = append(out, fmt.Sprintf("postgres  %-6s %-8s pid %-7d %s", n.Name, role, pidOf(n.Alive(), n.Pid), n.URLFor(HADatabase)))
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
