package node

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// HAProxyServer is one server of a backend.
type HAProxyServer struct {
	// Name is the server's name in HAProxy's configuration and statistics.
	Name string `json:"name"`
	// Addr is where connections go, host:port.
	Addr string `json:"addr"`
	// CheckAddr is where the health check goes, host:port (Patroni's REST API beside its
	// PostgreSQL); default Addr.
	CheckAddr string `json:"checkAddr,omitempty"`
}

// HAProxyFrontend is one listening port and the servers it sends connections to: those
// whose HTTP health check answers 200.
type HAProxyFrontend struct {
	// Name names it in the configuration ("pg-primary", "checkout").
	Name string `json:"name"`
	// Port is the loopback port it listens on; 0 picks a free one.
	Port int `json:"port"`
	// HTTP balances HTTP requests (round robin, the checkout instances); otherwise TCP
	// connections go to the first healthy server (PostgreSQL's primary).
	HTTP bool `json:"http"`
	// Check is the path of the HTTP health check ("/primary", "/readyz").
	Check   string          `json:"check"`
	Servers []HAProxyServer `json:"servers"`
}

// HAProxyOptions choose the proxy LaunchHAProxy or StartHAProxy makes.
type HAProxyOptions struct {
	// Dir holds haproxy.cfg and haproxy.log. StartHAProxy defaults it to a t.TempDir().
	Dir       string
	Frontends []HAProxyFrontend
	// Detached leaves the proxy running when the caller exits (make ha).
	Detached bool
}

// HAProxy is a running (or stopped) HAProxy (Debian's haproxy 2.6).
type HAProxy struct {
	server
	Dir       string
	Frontends []HAProxyFrontend
	detached  bool
}

// StartHAProxy runs a proxy for t, killed at cleanup; where haproxy is not installed it
// skips t (fails it when CI is set).
func StartHAProxy(t testing.TB, opt HAProxyOptions) *HAProxy {
	t.Helper()
	opt.Detached = false
	return forTest(t, "HAProxy", &opt.Dir, time.Minute, func(ctx context.Context) (*HAProxy, error) { return LaunchHAProxy(ctx, opt) })
}

// LaunchHAProxy writes haproxy.cfg under opt.Dir, starts HAProxy in the foreground and
// waits until every frontend accepts connections. A server is checked every 500 ms;
// one failed check marks it down and closes its connections (a demoted primary must
// not keep its clients), one good check marks it up.
func LaunchHAProxy(ctx context.Context, opt HAProxyOptions) (*HAProxy, error) {
	if opt.Dir == "" {
		return nil, fmt.Errorf("node: HAProxyOptions.Dir is required")
	}
	dir, err := filepath.Abs(opt.Dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	h := &HAProxy{Dir: dir, detached: opt.Detached}
	for _, f := range opt.Frontends {
		if f.Port == 0 {
			if f.Port, err = FreePort(); err != nil {
				return nil, err
			}
		}
		h.Frontends = append(h.Frontends, f)
	}
	if err := os.WriteFile(filepath.Join(dir, "haproxy.cfg"), []byte(h.config()), 0o644); err != nil {
		return nil, err
	}
	return h, h.start(ctx)
}

func (h *HAProxy) config() string {
	var b strings.Builder
	b.WriteString(`# node: HAProxy on loopback
global
    maxconn 4000
    log stdout format raw local0 info

defaults
    log global
    timeout connect 2s
    timeout check 1s
    # PostgreSQL sessions and GraphQL subscriptions live long
    timeout client 1h
    timeout server 1h
    timeout tunnel 1h
    default-server inter 500ms fall 1 rise 1 on-marked-down shutdown-sessions
`)
	for _, f := range h.Frontends {
		fmt.Fprintf(&b, "\nlisten %s\n    bind 127.0.0.1:%d\n", f.Name, f.Port)
		if f.HTTP {
			b.WriteString("    mode http\n    option httplog\n    balance roundrobin\n    option redispatch\n    retries 2\n")
		} else {
			b.WriteString("    mode tcp\n    option tcplog\n    balance first\n")
		}
		fmt.Fprintf(&b, "    option httpchk GET %s\n    http-check expect status 200\n", f.Check)
		for _, s := range f.Servers {
			fmt.Fprintf(&b, "    server %s %s check", s.Name, s.Addr)
			if s.CheckAddr != "" && s.CheckAddr != s.Addr {
				host, port, _ := net.SplitHostPort(s.CheckAddr)
				fmt.Fprintf(&b, " addr %s port %s", host, port)
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}

func (h *HAProxy) start(ctx context.Context) error {
	bin, err := LookBinary("haproxy", "/usr/sbin")
	if err != nil {
		return fmt.Errorf("%w (Debian package haproxy)", err)
	}
	cmd := exec.Command(bin, "-db", "-f", filepath.Join(h.Dir, "haproxy.cfg"))
	cmd.Dir = h.Dir
	if h.proc, err = Start(cmd, StartOptions{Log: h.LogPath(), Detached: h.detached}); err != nil {
		return fmt.Errorf("start haproxy: %w", err)
	}
	addrs := make([]string, len(h.Frontends))
	for i, f := range h.Frontends {
		addrs[i] = h.Addr(f.Name)
	}
	return h.proc.WaitReady(ctx, "haproxy", 50*time.Millisecond, func() string { return LogTail(h.LogPath(), 5) },
		func() bool { return dialable(addrs...) })
}

// Restart starts a killed or stopped proxy again on the same configuration and ports.
func (h *HAProxy) Restart(ctx context.Context) error {
	if h.Alive() {
		return fmt.Errorf("haproxy in %s is running", h.Dir)
	}
	return h.start(ctx)
}

// LogPath is the proxy's log (its own lines and one per connection or request).
func (h *HAProxy) LogPath() string { return filepath.Join(h.Dir, "haproxy.log") }

// Addr is the address of the named frontend, 127.0.0.1:port ("" when there is none).
func (h *HAProxy) Addr(frontend string) string {
	for _, f := range h.Frontends {
		if f.Name == frontend {
			return "127.0.0.1:" + strconv.Itoa(f.Port)
		}
	}
	return ""
}
