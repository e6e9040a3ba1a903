package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// RabbitScriptsDir holds the RabbitMQ scripts that run the server itself (rabbitmq-server,
// rabbitmqctl) rather than Debian's wrappers in /usr/sbin, which switch to the
// rabbitmq user and the machine's node.
var RabbitScriptsDir = "/usr/lib/rabbitmq/bin"

// RabbitMachineCookie is the Erlang cookie of the machine's RabbitMQ, shared by the private
// nodes when it is readable (a random one otherwise).
var RabbitMachineCookie = "/var/lib/rabbitmq/.erlang.cookie"

// RabbitTLS adds an amqps listener.
type RabbitTLS struct {
	// CertFile and KeyFile are the server's certificate and key; CAFile the CA that
	// client certificates must chain to (verify_peer, fail_if_no_peer_cert).
	CertFile, KeyFile, CAFile string
	// Only drops the plain AMQP listener.
	Only bool
}

// RabbitOptions choose the node LaunchRabbit or StartRabbit makes.
type RabbitOptions struct {
	// Dir holds the node (mnesia/, log/, home/ with the cookie, rabbitmq.conf, node.json).
	// StartRabbit defaults it to a t.TempDir(); LaunchRabbit requires it.
	// LaunchRabbitCluster makes one directory per node under it.
	Dir string
	// Name is the node name before @localhost; default "t" + random hex.
	Name string
	// Port, TLSPort and DistPort; 0 picks free loopback ports.
	Port, TLSPort, DistPort int
	// TLS adds an amqps listener on TLSPort.
	TLS *RabbitTLS
	// Cookie is the Erlang cookie; default RabbitMachineCookie's content, else random. Nodes of
	// a cluster share it.
	Cookie string
	// Config is more rabbitmq.conf text.
	Config string
	// Plugins are enabled at boot (rabbitmq_shovel for the links between regions).
	Plugins []string
	// Detached leaves the node running when the calling process exits (scripts);
	// StartRabbit ignores it.
	Detached bool
}

// Rabbit is a RabbitMQ node.
type Rabbit struct {
	server
	// Name is the full node name, e.g. t1a2b3c@localhost.
	Name string
	// Port is the AMQP port (0 when TLS.Only), TLSPort the amqps one (0 without TLS),
	// DistPort the Erlang distribution port.
	Port, TLSPort, DistPort int
	// Dir is the node's directory.
	Dir string
	opt RabbitOptions
}

// rabbitState is node.json, for scripts that act on a node another command started.
type rabbitState struct {
	RabbitOptions
	Pid int `json:"pid"`
}

// StartRabbit launches a node for t under t.TempDir() (unless opt.Dir is set) and kills
// it at cleanup, on every path. When RabbitMQ is missing or the node cannot start, the
// test is skipped with one line saying why (failed when CI is set).
func StartRabbit(t testing.TB, opt RabbitOptions) *Rabbit {
	t.Helper()
	opt.Detached = false
	return forTest(t, "RabbitMQ node", &opt.Dir, 2*time.Minute, func(ctx context.Context) (*Rabbit, error) { return LaunchRabbit(ctx, opt) })
}

// LaunchRabbit starts a node and waits until it answers AMQP. On an error after the
// server started, the returned node is non-nil so it can be killed.
func LaunchRabbit(ctx context.Context, opt RabbitOptions) (*Rabbit, error) {
	if opt.Dir == "" {
		return nil, errors.New("node: RabbitOptions.Dir is required")
	}
	server := filepath.Join(RabbitScriptsDir, "rabbitmq-server")
	if _, err := os.Stat(server); err != nil {
		return nil, fmt.Errorf("no %s (install rabbitmq-server): %w", server, ErrNoBinary)
	}
	if _, err := exec.LookPath("erl"); err != nil {
		return nil, fmt.Errorf("no erl on PATH (Erlang): %w", ErrNoBinary)
	}
	var err error
	if opt.Dir, err = filepath.Abs(opt.Dir); err != nil {
		return nil, err
	}
	if opt.Name == "" {
		opt.Name = "t" + randomHex(4)
	}
	if opt.Cookie == "" {
		opt.Cookie = defaultCookie()
	}
	for _, p := range []*int{&opt.Port, &opt.DistPort} {
		if *p == 0 {
			if *p, err = FreePort(); err != nil {
				return nil, err
			}
		}
	}
	if opt.TLS != nil && opt.TLSPort == 0 {
		if opt.TLSPort, err = FreePort(); err != nil {
			return nil, err
		}
	}
	n := newRabbit(opt.Dir, opt)
	if err := n.writeFiles(); err != nil {
		return nil, err
	}
	return n, n.start(ctx)
}

func newRabbit(dir string, opt RabbitOptions) *Rabbit {
	n := &Rabbit{Name: opt.Name + "@localhost", Port: opt.Port, TLSPort: opt.TLSPort, DistPort: opt.DistPort, Dir: dir, opt: opt}
	if opt.TLS != nil && opt.TLS.Only {
		n.Port = 0
	}
	return n
}

// OpenRabbit returns the node another command launched in dir (from its node.json).
func OpenRabbit(dir string) (*Rabbit, error) {
	var s rabbitState
	dir, err := readState(dir, &s)
	if err != nil {
		return nil, err
	}
	n := newRabbit(dir, s.RabbitOptions)
	n.proc, err = Attach(s.Pid, n.Name)
	return n, err
}

func (n *Rabbit) writeFiles() error {
	home := filepath.Join(n.Dir, "home")
	for _, d := range []string{home, filepath.Join(n.Dir, "mnesia"), filepath.Join(n.Dir, "log")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	cookie := filepath.Join(home, ".erlang.cookie")
	os.Remove(cookie)
	if err := os.WriteFile(cookie, []byte(n.opt.Cookie), 0o400); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(n.Dir, "enabled_plugins"), []byte("["+strings.Join(n.opt.Plugins, ",")+"].\n"), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(n.Dir, "rabbitmq-env.conf"), []byte("# node: the environment comes from the process\n"), 0o644); err != nil {
		return err
	}
	var conf strings.Builder
	fmt.Fprintf(&conf, "# node %s\n", n.Name)
	if n.Port != 0 {
		fmt.Fprintf(&conf, "listeners.tcp.1 = 127.0.0.1:%d\n", n.Port)
	} else {
		conf.WriteString("listeners.tcp = none\n")
	}
	if t := n.opt.TLS; t != nil {
		fmt.Fprintf(&conf, "listeners.ssl.1 = 127.0.0.1:%d\nssl_options.certfile = %s\nssl_options.keyfile = %s\nssl_options.cacertfile = %s\nssl_options.verify = verify_peer\nssl_options.fail_if_no_peer_cert = true\n",
			n.TLSPort, t.CertFile, t.KeyFile, t.CAFile)
	}
	conf.WriteString("log.console = false\nlog.file.level = info\n")
	conf.WriteString(n.opt.Config)
	return os.WriteFile(filepath.Join(n.Dir, "rabbitmq.conf"), []byte(conf.String()), 0o644)
}

// env is the environment of the server and of rabbitmqctl for this node: its own
// configuration files and directories instead of /etc/rabbitmq and /var/lib/rabbitmq.
func (n *Rabbit) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RABBITMQ_") && !strings.HasPrefix(kv, "HOME=") && !strings.HasPrefix(kv, "ERL_") {
			env = append(env, kv)
		}
	}
	return append(env,
		"HOME="+filepath.Join(n.Dir, "home"),
		"RABBITMQ_CONF_ENV_FILE="+filepath.Join(n.Dir, "rabbitmq-env.conf"),
		"RABBITMQ_CONFIG_FILE="+filepath.Join(n.Dir, "rabbitmq.conf"),
		"RABBITMQ_ADVANCED_CONFIG_FILE="+filepath.Join(n.Dir, "advanced.config"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(n.Dir, "enabled_plugins"),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(n.Dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(n.Dir, "log"),
		"RABBITMQ_PID_FILE="+filepath.Join(n.Dir, "rabbitmq.pid"),
		"RABBITMQ_NODENAME="+n.Name,
		fmt.Sprintf("RABBITMQ_NODE_PORT=%d", n.opt.Port),
		fmt.Sprintf("RABBITMQ_DIST_PORT=%d", n.DistPort),
		"ERL_EPMD_ADDRESS=127.0.0.1",
	)
}

func (n *Rabbit) start(ctx context.Context) error {
	cmd := exec.Command(filepath.Join(RabbitScriptsDir, "rabbitmq-server"))
	cmd.Dir = n.Dir
	// RABBITMQ_ALLOW_INPUT makes the script exec the VM, so the process started here is
	// the node itself (its pid is the one to stop); -noinput keeps the Erlang shell off.
	// Schedulers that run out of work sleep at once instead of spinning (+sbwt none, as
	// RabbitMQ advises for shared machines): a dozen nodes boot on two cores during a test
	// run, and a spinning one takes CPU from the others.
	cmd.Env = append(n.env(), "RABBITMQ_ALLOW_INPUT=1",
		"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-noinput -kernel inet_dist_use_interface {127,0,0,1} +sbwt none +sbwtdcpu none +sbwtdio none")
	var err error
	if n.proc, err = Start(cmd, StartOptions{Log: filepath.Join(n.Dir, "stdout.log"), Detached: n.opt.Detached}); err != nil {
		return fmt.Errorf("start rabbitmq-server: %w", err)
	}
	if err := writeState(n.Dir, rabbitState{RabbitOptions: n.opt, Pid: n.proc.Pid}); err != nil {
		return err
	}
	return n.Wait(ctx)
}

// Wait waits until the node answers AMQP (a TLS-only node: accepts on its amqps port).
func (n *Rabbit) Wait(ctx context.Context) error {
	return n.proc.WaitReady(ctx, "rabbitmq node "+n.Name, 50*time.Millisecond, n.logTail, n.answers)
}

func (n *Rabbit) answers() bool {
	if n.Port == 0 {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", n.TLSPort), time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	}
	c, err := amqp.DialConfig(n.URL(), amqp.Config{Dial: amqp.DefaultDial(2 * time.Second)})
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func (n *Rabbit) logTail() string {
	if s := LogTail(filepath.Join(n.Dir, "log", n.Name+".log"), 3); s != "" {
		return s
	}
	return LogTail(filepath.Join(n.Dir, "stdout.log"), 3)
}

// URL is the node's AMQP URL (guest, which RabbitMQ allows from loopback).
func (n *Rabbit) URL() string { return fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", n.Port) }

// TLSURL is the node's amqps URL.
func (n *Rabbit) TLSURL() string { return fmt.Sprintf("amqps://guest:guest@127.0.0.1:%d/", n.TLSPort) }

// HostPort is the AMQP listener's address.
func (n *Rabbit) HostPort() string { return fmt.Sprintf("127.0.0.1:%d", n.Port) }

// Stop stops the node cleanly (SIGTERM), killing it if it has not stopped within 60s.
func (n *Rabbit) Stop() { n.proc.Stop(syscall.SIGTERM, 60*time.Second) }

// Restart starts a stopped or killed node again with the same name, ports and data (a
// cluster member rejoins its cluster) and waits until it answers.
func (n *Rabbit) Restart(ctx context.Context) error {
	if n.Alive() {
		return fmt.Errorf("rabbitmq node %s is running", n.Name)
	}
	return n.start(ctx)
}

// Ctl runs rabbitmqctl against this node.
func (n *Rabbit) Ctl(ctx context.Context, args ...string) ([]byte, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, filepath.Join(RabbitScriptsDir, "rabbitmqctl"), append([]string{"-n", n.Name}, args...)...)
	cmd.Dir = n.Dir
	// The CLI is an Erlang node too: give it its own distribution ports, not the
	// machine-wide default range every concurrent rabbitmqctl would compete for.
	cmd.Env = append(n.env(), fmt.Sprintf("RABBITMQ_CTL_DIST_PORT_MIN=%d", port), fmt.Sprintf("RABBITMQ_CTL_DIST_PORT_MAX=%d", port+10))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("rabbitmqctl -n %s %s: %v: %s", n.Name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// RabbitCluster is a set of nodes joined into one RabbitMQ cluster.
type RabbitCluster struct {
	Nodes []*Rabbit
}

// StartRabbitCluster launches size nodes joined into one cluster for t and kills them at
// cleanup (skips or fails the test as StartRabbit does).
func StartRabbitCluster(t testing.TB, size int, opt RabbitOptions) *RabbitCluster {
	t.Helper()
	opt.Detached = false
	return forTest(t, "RabbitMQ cluster", &opt.Dir, 3*time.Minute, func(ctx context.Context) (*RabbitCluster, error) { return LaunchRabbitCluster(ctx, size, opt) })
}

// LaunchRabbitCluster starts a cluster of size nodes (one directory each under opt.Dir,
// one cookie): the first node, then the others at once, each told the first one's name
// in its configuration (classic_config peer discovery) so that it joins it as it boots.
// No rabbitmqctl runs (each call is an Erlang VM of its own that takes seconds to boot).
// A node that boots alone instead of joining is an error. The returned cluster holds
// every node started, also on error.
func LaunchRabbitCluster(ctx context.Context, size int, opt RabbitOptions) (*RabbitCluster, error) {
	if opt.Cookie == "" {
		opt.Cookie = defaultCookie()
	}
	if opt.Name == "" {
		opt.Name = "t" + randomHex(3)
	}
	member := func(i int) RabbitOptions {
		o := opt
		o.Name = fmt.Sprintf("%sn%d", opt.Name, i+1)
		o.Dir = filepath.Join(opt.Dir, o.Name)
		o.Port, o.TLSPort, o.DistPort = 0, 0, 0
		return o
	}
	c := &RabbitCluster{}
	first := member(0)
	// The cluster's name is a setting the members share once they joined: a node that
	// booted alone reports a default of its own.
	first.Config = fmt.Sprintf("%s\ncluster_name = %s\n", first.Config, opt.Name)
	seed, err := LaunchRabbit(ctx, first)
	if seed != nil {
		c.Nodes = append(c.Nodes, seed)
	}
	if err != nil {
		return c, err
	}
	errs := make(chan error, size-1)
	joined := make([]*Rabbit, size-1)
	for i := range size - 1 {
		o := member(i + 1)
		o.Config = fmt.Sprintf("%s\ncluster_formation.peer_discovery_backend = classic_config\ncluster_formation.classic_config.nodes.1 = %s\n", o.Config, seed.Name)
		go func() {
			n, err := LaunchRabbit(ctx, o)
			joined[i] = n
			if err == nil && n.Port != 0 {
				err = n.inCluster(opt.Name)
			}
			errs <- err
		}()
	}
	for range size - 1 {
		if e := <-errs; e != nil && err == nil {
			err = e
		}
	}
	for _, n := range joined {
		if n != nil {
			c.Nodes = append(c.Nodes, n)
		}
	}
	return c, err
}

// inCluster checks that n joined the cluster named cluster: the name AMQP connections
// are told is the one the cluster's first node was given, not a default of n's own.
func (n *Rabbit) inCluster(cluster string) error {
	c, err := amqp.DialConfig(n.URL(), amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		return err
	}
	defer c.Close()
	if got, _ := c.Properties["cluster_name"].(string); got != cluster {
		return fmt.Errorf("rabbitmq node %s booted alone (cluster %q) instead of joining cluster %q: %s", n.Name, got, cluster, n.logTail())
	}
	return nil
}

// Kill kills every node of the cluster.
func (c *RabbitCluster) Kill() {
	for _, n := range c.Nodes {
		n.Kill()
	}
}

// URLs are the AMQP URLs of the nodes.
func (c *RabbitCluster) URLs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.URL()
	}
	return out
}

// URL is the nodes' AMQP URLs separated by commas, the AMQP_URL syntax for a cluster.
func (c *RabbitCluster) URL() string { return strings.Join(c.URLs(), ",") }

func defaultCookie() string {
	if b, err := os.ReadFile(RabbitMachineCookie); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b))
	}
	return strings.ToUpper(randomHex(10))
}
