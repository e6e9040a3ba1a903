package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	toxiclient "github.com/Shopify/toxiproxy/v2/client"
)

// RegionsOptions shape the deployment of several regions UpRegions starts.
type RegionsOptions struct {
	// Dir holds everything, one directory per region (wiped first).
	Dir string
	// Bin is the checkout binary; ToxiproxyBin the toxiproxy server every link between
	// regions goes through.
	Bin, ToxiproxyBin string
	// Names are the regions (default east, west), in REGIONS order.
	Names []string
	// Env is more environment for every instance (REBALANCE_*, the payment provider).
	Env []string
	// Patroni gives each region the self-healing database of production instead of one
	// PostgreSQL server: an etcd member and three PostgreSQL nodes under Patroni in
	// strict synchronous mode, which the instance finds by a multi-host URL
	// (target_session_attrs=read-write).
	Patroni bool
	// Log receives progress lines.
	Log io.Writer
}

// Region is one region of a RegionsStack: its PostgreSQL (one server, or a Patroni
// cluster with its etcd), its RabbitMQ node (with the shovel plugin) and one
// `checkout serve` instance.
type Region struct {
	Name     string
	PG       *Postgres
	Patroni  *PatroniCluster
	Etcd     *EtcdCluster
	Rabbit   *Rabbit
	Instance *Instance
	// DatabaseURL is the region's database (on its own server).
	DatabaseURL string
}

// Link is a connection from one region to another (a shovel to the peer's broker, or
// the API forwarding to the peer's API), through a toxiproxy proxy of its own.
type Link struct {
	From, To, Kind string // Kind: amqp or api
	Proxy          string // the proxy's name
	Listen         string // what From dials
}

// RegionsStack is a deployment of several regions on one machine, without Docker:
// each region its own PostgreSQL server, RabbitMQ node and instance (REGION, REGIONS,
// REGION_URLS), the regions' brokers linked by RabbitMQ shovels, and every link
// between regions through toxiproxy, so a partition or WAN latency can be put in and
// taken out (Partition, Latency). Every process dies with the caller.
type RegionsStack struct {
	Dir       string
	JWTSecret string
	Regions   []*Region
	Links     []Link
	Toxiproxy *Toxiproxy
	bin       string
	env       []string
}

// RegionsPrefix is the AMQP_PREFIX of every region's topology: a shovel delivers to the
// peer's exchange of the same name.
const RegionsPrefix = "checkout-regions."

// UpRegions starts the regions and waits until every instance is ready and every
// shovel runs. On error it stops what it started.
func UpRegions(ctx context.Context, opt RegionsOptions) (_ *RegionsStack, err error) {
	if len(opt.Names) == 0 {
		opt.Names = []string{"east", "west"}
	}
	if opt.Log == nil {
		opt.Log = io.Discard
	}
	if opt.ToxiproxyBin == "" || opt.Bin == "" {
		return nil, errors.New("node: UpRegions needs the checkout and toxiproxy binaries")
	}
	dir, err := filepath.Abs(opt.Dir)
	if err != nil {
		return nil, err
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	s := &RegionsStack{Dir: dir, JWTSecret: randomHex(24), bin: opt.Bin, env: opt.Env}
	defer func() {
		if err != nil {
			s.Down()
		}
	}()
	started := time.Now()
	step := func(format string, args ...any) {
		fmt.Fprintf(opt.Log, "  "+format+" after %s\n", append(args, time.Since(started).Round(100*time.Millisecond))...)
	}
	if s.Toxiproxy, err = launchToxiproxy(ctx, opt.ToxiproxyBin, dir, false); err != nil {
		return s, err
	}
	// The servers of every region start at once.
	fmt.Fprintf(opt.Log, "starting PostgreSQL and RabbitMQ for regions %s...\n", strings.Join(opt.Names, ", "))
	var wg sync.WaitGroup
	errs := make([]error, 2*len(opt.Names))
	for i, name := range opt.Names {
		r := &Region{Name: name}
		s.Regions = append(s.Regions, r)
		wg.Add(2)
		go func() {
			defer wg.Done()
			if opt.Patroni {
				errs[2*i] = r.launchPatroni(ctx, filepath.Join(dir, name))
				return
			}
			r.PG, errs[2*i] = LaunchPostgres(ctx, PostgresOptions{Dir: filepath.Join(dir, name, "postgres"), Name: name,
				Settings: map[string]string{"max_connections": "100"}})
		}()
		go func() {
			defer wg.Done()
			r.Rabbit, errs[2*i+1] = LaunchRabbit(ctx, RabbitOptions{Dir: filepath.Join(dir, name, "rabbitmq"), Name: name + randomHex(2),
				Plugins: []string{"rabbitmq_shovel"}})
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return s, err
	}
	for _, r := range s.Regions {
		admin := ""
		if r.Patroni != nil {
			leader := r.waitLeader(ctx)
			if leader == nil {
				return s, fmt.Errorf("region %s: patroni elected no leader", r.Name)
			}
			admin, r.DatabaseURL = leader.URL(), r.Patroni.URLFor(HADatabase)
		} else {
			admin, r.DatabaseURL = r.PG.URL(), r.PG.URLFor(HADatabase)
		}
		if err := createDatabase(ctx, admin); err != nil {
			return s, fmt.Errorf("region %s: %w", r.Name, err)
		}
	}
	step("servers up")
	// Links: each region's shovel to each peer's broker, and its API's forwarding to
	// each peer's API, each through a proxy of its own. The instances' ports are picked
	// first, so the API links have their upstreams.
	for _, r := range s.Regions {
		port, err := FreePort()
		if err != nil {
			return s, err
		}
		r.Instance = &Instance{Name: r.Name, Addr: fmt.Sprintf("127.0.0.1:%d", port), Log: filepath.Join(dir, r.Name, "checkout.log")}
	}
	for _, from := range s.Regions {
		for _, to := range s.Regions {
			if from == to {
				continue
			}
			for kind, upstream := range map[string]string{"amqp": to.Rabbit.HostPort(), "api": to.Instance.Addr} {
				name := from.Name + "-to-" + to.Name + "-" + kind
				p, err := s.Toxiproxy.Client().CreateProxy(name, "127.0.0.1:0", upstream)
				if err != nil {
					return s, fmt.Errorf("toxiproxy: %w", err)
				}
				s.Links = append(s.Links, Link{From: from.Name, To: to.Name, Kind: kind, Proxy: name, Listen: p.Listen})
			}
		}
	}
	for _, r := range s.Regions {
		if out, err := s.command(ctx, r, "migrate").CombinedOutput(); err != nil {
			return s, fmt.Errorf("region %s: checkout migrate: %v: %s", r.Name, err, out)
		}
		if err := s.StartInstance(ctx, r); err != nil {
			return s, err
		}
		// The shovels: the topology they take from and deliver to is declared by now.
		var peers []string
		for _, l := range s.Links {
			if l.From == r.Name && l.Kind == "amqp" {
				peers = append(peers, l.To+"=amqp://guest:guest@"+l.Listen+"/%2f")
			}
		}
		out, err := s.command(ctx, r, append([]string{"shovels"}, peers...)...).Output()
		if err != nil {
			return s, fmt.Errorf("region %s: checkout shovels: %w", r.Name, err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			// rabbitmqctl set_parameter shovel 'NAME' 'DEFINITION'
			f := strings.Split(line, "'")
			if len(f) != 5 {
				return s, fmt.Errorf("region %s: unexpected shovel line %q", r.Name, line)
			}
			if _, err := r.Rabbit.Ctl(ctx, "set_parameter", "shovel", f[1], f[3]); err != nil {
				return s, err
			}
		}
	}
	step("%d regions ready, linked by shovels", len(s.Regions))
	return s, nil
}

// launchPatroni starts the region's etcd member and its three PostgreSQL nodes under
// Patroni (strict synchronous mode: an acknowledged commit survives the leader's loss).
func (r *Region) launchPatroni(ctx context.Context, dir string) error {
	var err error
	if r.Etcd, err = LaunchEtcdCluster(ctx, EtcdOptions{Dir: filepath.Join(dir, "etcd"), Members: 1}); err != nil {
		return fmt.Errorf("region %s: etcd: %w", r.Name, err)
	}
	r.Patroni, err = LaunchPatroniCluster(ctx, 3, PatroniOptions{Dir: filepath.Join(dir, "patroni"), Name: r.Name, Scope: r.Name,
		Etcd: r.Etcd.Endpoints(), Synchronous: true, Settings: map[string]string{"max_connections": "100"}})
	if err != nil {
		return fmt.Errorf("region %s: patroni: %w", r.Name, err)
	}
	return nil
}

// waitLeader waits up to a minute for the region's Patroni leader.
func (r *Region) waitLeader(ctx context.Context) *Patroni {
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline) && ctx.Err() == nil; time.Sleep(200 * time.Millisecond) {
		if p := r.Patroni.Leader(ctx); p != nil {
			return p
		}
	}
	return nil
}

// Region returns the named region (nil if none).
func (s *RegionsStack) Region(name string) *Region {
	for _, r := range s.Regions {
		if r.Name == name {
			return r
		}
	}
	return nil
}

// command is the checkout binary with region r's configuration.
func (s *RegionsStack) command(ctx context.Context, r *Region, args ...string) *exec.Cmd {
	var names, urls []string
	for _, o := range s.Regions {
		names = append(names, o.Name)
	}
	for _, l := range s.Links {
		if l.From == r.Name && l.Kind == "api" {
			urls = append(urls, l.To+"=http://"+l.Listen)
		}
	}
	cmd := exec.CommandContext(ctx, s.bin, args...)
	cmd.Env = append(append(os.Environ(), "DATABASE_URL="+r.DatabaseURL, "AMQP_URL="+r.Rabbit.URL(), "AMQP_PREFIX="+RegionsPrefix,
		"AMQP_QUORUM_SIZE=1", "JWT_SECRET="+s.JWTSecret, "APP_ENV=development", "REDIS_URL=",
		"REGION="+r.Name, "REGIONS="+strings.Join(names, ","), "REGION_URLS="+strings.Join(urls, ","),
		"ANALYTICS_SINK=off"), s.env...)
	return cmd
}

// StartInstance starts (or restarts) region r's instance and waits until it is ready.
func (s *RegionsStack) StartInstance(ctx context.Context, r *Region) error {
	in := r.Instance
	cmd := s.command(context.Background(), r, "serve")
	cmd.Env = append(cmd.Env, "HTTP_ADDR="+in.Addr)
	var err error
	if in.proc, err = Start(cmd, StartOptions{Log: in.Log}); err != nil {
		return fmt.Errorf("%s: %w", in.Name, err)
	}
	in.Pid = in.proc.Pid
	return in.proc.WaitReady(ctx, "region "+r.Name, 100*time.Millisecond, func() string { return LogTail(in.Log, 3) },
		func() bool { return ready(in.URL()) == 200 })
}

// Partition cuts (on) or heals (off) every link between regions a and b, both ways.
func (s *RegionsStack) Partition(a, b string, on bool) error {
	for _, l := range s.Links {
		if (l.From == a && l.To == b) || (l.From == b && l.To == a) {
			p, err := s.Toxiproxy.Client().Proxy(l.Proxy)
			if err != nil {
				return err
			}
			if on {
				err = p.Disable()
			} else {
				err = p.Enable()
			}
			if err != nil {
				return fmt.Errorf("link %s: %w", l.Proxy, err)
			}
		}
	}
	return nil
}

// Latency adds d each way to every link between regions (0 removes it): a WAN.
func (s *RegionsStack) Latency(d time.Duration) error {
	for _, l := range s.Links {
		p, err := s.Toxiproxy.Client().Proxy(l.Proxy)
		if err != nil {
			return err
		}
		for _, stream := range []string{"upstream", "downstream"} {
			name := "wan-" + stream
			p.RemoveToxic(name)
			if d > 0 {
				if _, err := p.AddToxic(name, "latency", stream, 1, toxiclient.Attributes{"latency": d.Milliseconds()}); err != nil {
					return fmt.Errorf("link %s: %w", l.Proxy, err)
				}
			}
		}
	}
	return nil
}

// Down stops every process of the stack.
func (s *RegionsStack) Down() {
	var wg sync.WaitGroup
	for _, r := range s.Regions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r.Instance != nil && r.Instance.proc != nil {
				r.Instance.proc.Stop(syscall.SIGTERM, 10*time.Second)
			}
			if r.Rabbit != nil {
				r.Rabbit.Stop()
			}
			if r.PG != nil {
				r.PG.Stop()
			}
			if r.Patroni != nil {
				r.Patroni.Kill()
			}
			if r.Etcd != nil {
				r.Etcd.Kill()
			}
		}()
	}
	wg.Wait()
	s.Toxiproxy.Stop()
}

// Describe is what a person running the stack needs: each region's API and servers,
// and the proxies of the links.
func (s *RegionsStack) Describe() string {
	var b strings.Builder
	for _, r := range s.Regions {
		fmt.Fprintf(&b, "  region %-6s API %s/graphql  DATABASE_URL=%s  AMQP_URL=%s\n", r.Name, r.Instance.URL(), r.DatabaseURL, r.Rabbit.URL())
	}
	links, _ := json.Marshal(s.Links)
	fmt.Fprintf(&b, "  toxiproxy %s: links %s\n", s.Toxiproxy.API, links)
	return b.String()
}
