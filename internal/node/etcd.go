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
	"strings"
	"testing"
	"time"
)

// EtcdOptions choose the cluster LaunchEtcdCluster or StartEtcdCluster makes.
type EtcdOptions struct {
	// Dir holds one directory per member (Dir/<name>: data/, etcd.log).
	// StartEtcdCluster defaults it to a t.TempDir(); LaunchEtcdCluster requires it.
	Dir string
	// Members is the cluster's size (default 3).
	Members int
	// Detached leaves the members running when the calling process exits (scripts);
	// StartEtcdCluster ignores it.
	Detached bool
}

// EtcdCluster is a set of etcd (3.4, v3 API) members forming one cluster on loopback.
type EtcdCluster struct {
	// Members are the cluster's members, in the order of --initial-cluster.
	Members []*EtcdMember
}

// EtcdMember is one etcd server of an EtcdCluster.
type EtcdMember struct {
	server
	// Name is the member's name (--name).
	Name string
	// ClientURL and PeerURL are the member's client and peer URLs, http://127.0.0.1:port.
	ClientURL, PeerURL string
	// Dir is the member's directory: data/ (its --data-dir) and etcd.log.
	Dir string
	// ClientPort and PeerPort are the loopback ports of ClientURL and PeerURL.
	ClientPort, PeerPort int
	bin                  string
	args                 []string
	detached             bool
}

// StartEtcdCluster launches a cluster for t under t.TempDir() (unless opt.Dir is set) and
// kills every member at cleanup, on every path. Where etcd is not installed or the cluster
// cannot start, the test is skipped with one line saying why (failed when CI is set).
func StartEtcdCluster(t testing.TB, opt EtcdOptions) *EtcdCluster {
	t.Helper()
	opt.Detached = false
	return forTest(t, "etcd cluster", &opt.Dir, time.Minute, func(ctx context.Context) (*EtcdCluster, error) { return LaunchEtcdCluster(ctx, opt) })
}

// LaunchEtcdCluster starts opt.Members etcd members at once (each told every other one in
// --initial-cluster, with a token of its own so that it never joins another test's
// cluster) with test timings (100ms heartbeats, 1s elections), and waits until every one
// reports itself healthy. The returned cluster holds every member started, also on error,
// so that it can be killed.
func LaunchEtcdCluster(ctx context.Context, opt EtcdOptions) (*EtcdCluster, error) {
	if opt.Dir == "" {
		return nil, errors.New("node: EtcdOptions.Dir is required")
	}
	if opt.Members == 0 {
		opt.Members = 3
	}
	bin, err := LookBinary("etcd")
	if err != nil {
		return nil, fmt.Errorf("%w (Debian package etcd-server)", err)
	}
	dir, err := filepath.Abs(opt.Dir)
	if err != nil {
		return nil, err
	}
	token := "node-" + randomHex(8)
	c := &EtcdCluster{}
	var initial []string
	for i := range opt.Members {
		m := &EtcdMember{Name: fmt.Sprintf("etcd%d", i+1), bin: bin, detached: opt.Detached}
		m.Dir = filepath.Join(dir, m.Name)
		if m.ClientPort, err = FreePort(); err != nil {
			return nil, err
		}
		if m.PeerPort, err = FreePort(); err != nil {
			return nil, err
		}
		m.ClientURL = fmt.Sprintf("http://127.0.0.1:%d", m.ClientPort)
		m.PeerURL = fmt.Sprintf("http://127.0.0.1:%d", m.PeerPort)
		if err := os.MkdirAll(m.Dir, 0o755); err != nil {
			return nil, err
		}
		initial = append(initial, m.Name+"="+m.PeerURL)
		c.Members = append(c.Members, m)
	}
	for _, m := range c.Members {
		m.args = []string{
			"--name", m.Name,
			"--data-dir", filepath.Join(m.Dir, "data"),
			"--listen-client-urls", m.ClientURL, "--advertise-client-urls", m.ClientURL,
			"--listen-peer-urls", m.PeerURL, "--initial-advertise-peer-urls", m.PeerURL,
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-state", "new",
			"--initial-cluster-token", token,
			// Test timings: a dead etcd leader is replaced within about a second.
			"--heartbeat-interval", "100", "--election-timeout", "1000",
			"--logger", "zap", "--log-outputs", "stderr",
		}
	}
	// All members start before any is waited for: a member is healthy only once a quorum
	// elected a leader.
	started := 0
	for _, m := range c.Members {
		if err := m.launch(); err != nil {
			c.Members = c.Members[:started]
			return c, err
		}
		started++
	}
	for _, m := range c.Members {
		if err := m.wait(ctx); err != nil {
			return c, err
		}
	}
	return c, nil
}

// launch starts the member's process on its arguments.
func (m *EtcdMember) launch() error {
	cmd := exec.Command(m.bin, m.args...)
	cmd.Dir = m.Dir
	cmd.Env = cleanEnv("ETCD")
	var err error
	if m.proc, err = Start(cmd, StartOptions{Log: m.LogPath(), Detached: m.detached}); err != nil {
		return fmt.Errorf("start etcd %s: %w", m.Name, err)
	}
	return nil
}

// wait waits until the member reports itself healthy.
func (m *EtcdMember) wait(ctx context.Context) error {
	return m.proc.WaitReady(ctx, "etcd member "+m.Name, 50*time.Millisecond,
		func() string { return LogTail(m.LogPath(), 3) }, func() bool { return m.Healthy(ctx) })
}

// Healthy reports whether the member answers GET /health with {"health":"true"}: it runs
// and belongs to a quorum that has a leader.
func (m *EtcdMember) Healthy(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.ClientURL+"/health", nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var h struct {
		Health string `json:"health"`
	}
	return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&h) == nil && h.Health == "true"
}

// Restart starts a killed or stopped member again on the same data directory, name and
// ports (it rejoins its cluster from its write-ahead log) and waits until it is healthy.
func (m *EtcdMember) Restart(ctx context.Context) error {
	if m.Alive() {
		return fmt.Errorf("etcd member %s is running", m.Name)
	}
	if err := m.launch(); err != nil {
		return err
	}
	return m.wait(ctx)
}

// Endpoint is the member's client address, 127.0.0.1:port.
func (m *EtcdMember) Endpoint() string { return fmt.Sprintf("127.0.0.1:%d", m.ClientPort) }

// LogPath is the member's log file.
func (m *EtcdMember) LogPath() string { return filepath.Join(m.Dir, "etcd.log") }

// Ctl runs etcdctl (v3 API) against this member alone, e.g. Ctl(ctx, "put", "k", "v").
func (m *EtcdMember) Ctl(ctx context.Context, args ...string) ([]byte, error) {
	return etcdctl(ctx, []string{m.Endpoint()}, args...)
}

// Kill kills every member of the cluster.
func (c *EtcdCluster) Kill() {
	for _, m := range c.Members {
		m.Kill()
	}
}

// Endpoints are the members' client addresses, 127.0.0.1:port: what Patroni's etcd3
// hosts list takes (with protocol http, its default) and etcdctl --endpoints too.
func (c *EtcdCluster) Endpoints() []string {
	out := make([]string, len(c.Members))
	for i, m := range c.Members {
		out[i] = m.Endpoint()
	}
	return out
}

// Ctl runs etcdctl (v3 API) against every member's endpoint: it uses whichever answers.
func (c *EtcdCluster) Ctl(ctx context.Context, args ...string) ([]byte, error) {
	return etcdctl(ctx, c.Endpoints(), args...)
}

func etcdctl(ctx context.Context, endpoints []string, args ...string) ([]byte, error) {
	bin, err := LookBinary("etcdctl")
	if err != nil {
		return nil, fmt.Errorf("%w (Debian package etcd-client)", err)
	}
	cmd := exec.CommandContext(ctx, bin, append([]string{"--endpoints", strings.Join(endpoints, ","), "--dial-timeout", "2s", "--command-timeout", "5s"}, args...)...)
	cmd.Env = append(cleanEnv("ETCDCTL"), "ETCDCTL_API=3")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("etcdctl %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// cleanEnv is this process's environment without the variables whose names start with
// one of prefixes (a server's or tool's own settings, which would override its flags).
func cleanEnv(prefixes ...string) []string {
	var env []string
next:
	for _, kv := range os.Environ() {
		for _, p := range prefixes {
			if strings.HasPrefix(kv, p) {
				continue next
			}
		}
		env = append(env, kv)
	}
	return env
}
