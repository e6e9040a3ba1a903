package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// localService is the `checkout serve` child the bench starts on its own database.
type localService struct {
	baseURL     string
	databaseURL string
	logPath     string
	dir         string   // temporary: the built binary
	env         []string // the child's environment (its broker names)

	cmd     *exec.Cmd
	logFile *os.File
	exited  chan struct{} // closed once the child is reaped; then waitErr is set
	waitErr error
}

// startLocalService recreates the bench database, builds the service (unless -bin),
// migrates, and starts `checkout serve` on a free loopback port, then waits for
// /healthz. On error nothing is left running.
func startLocalService(ctx context.Context, opts options, out io.Writer) (s *localService, err error) {
	s = &localService{logPath: filepath.Join(os.TempDir(), "checkout-bench-service.log")}
	defer func() {
		if err != nil {
			s.stop(io.Discard)
			s = nil
		}
	}()
	if s.dir, err = os.MkdirTemp("", "checkout-bench-"); err != nil {
		return s, err
	}

	if s.databaseURL, err = recreateDatabase(ctx, opts.databaseURL, opts.benchDB); err != nil {
		return s, err
	}
	fmt.Fprintf(out, "bench: database %s recreated\n", describeDB(s.databaseURL))

	bin := opts.bin
	if bin == "" {
		if bin, err = buildService(ctx, s.dir, out); err != nil {
			return s, err
		}
	}

	addr, err := freeLoopbackAddr()
	if err != nil {
		return s, err
	}
	s.baseURL = "http://" + addr
	set := map[string]string{
		"DATABASE_URL":     s.databaseURL,
		"HTTP_ADDR":        addr,
		"JWT_SECRET":       opts.jwtSecret,
		"AMQP_PREFIX":      amqpPrefix(opts.benchDB),
		"PAYMENT_PROVIDER": "sandbox", // the bench pays with the sandbox's tok_visa
	}
	// The workloads suite measures the checkout path, not the load shedding: unless the
	// caller sets them, the bulkhead admits the bench's concurrency and the per-client
	// rate limit and cap on unpaid orders (its customers order faster than the saga
	// pays) are off. The strategies suite runs the service as users run it.
	if !opts.asUsersRun {
		for k, v := range map[string]string{"CHECKOUT_CONCURRENCY": "64", "CLIENT_RATE": "0", "CHECKOUT_RATE": "0", "SOCKETS_PER_CLIENT": "0",
			"CHECKOUT_MAX_UNPAID_ORDERS": "0"} {
			if os.Getenv(k) == "" {
				set[k] = v
			}
		}
	}
	for k, v := range opts.serviceEnv {
		set[k] = v
	}
	env := childEnv(os.Environ(), set)
	s.env = env
	start := time.Now()
	if err := resetBroker(ctx, env); err != nil {
		// The service still starts: it declares what it needs.
		fmt.Fprintf(out, "bench: could not delete the bench's RabbitMQ queues (prefix %q): %v\n", amqpPrefix(opts.benchDB), err)
	} else {
		fmt.Fprintf(out, "bench: RabbitMQ exchange and queues %s* reset in %s\n", amqpPrefix(opts.benchDB), time.Since(start).Round(10*time.Millisecond))
	}

	mig := exec.CommandContext(ctx, bin, "migrate")
	mig.Env = env
	if b, err := mig.CombinedOutput(); err != nil {
		return s, fmt.Errorf("checkout migrate: %w\n%s", err, tail(b, 20))
	}

	if s.logFile, err = os.Create(s.logPath); err != nil {
		return s, err
	}
	s.cmd = exec.Command(bin, "serve")
	s.cmd.Env = env
	s.cmd.Stdout, s.cmd.Stderr = s.logFile, s.logFile
	s.cmd.SysProcAttr = childSysProcAttr()
	if err := s.cmd.Start(); err != nil {
		return s, fmt.Errorf("start checkout serve: %w", err)
	}
	s.exited = make(chan struct{})
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.exited)
	}()
	fmt.Fprintf(out, "bench: checkout serve (pid %d) on %s, log %s\n", s.cmd.Process.Pid, s.baseURL, s.logPath)

	if err := s.waitHealthy(ctx, 30*time.Second); err != nil {
		return s, fmt.Errorf("%w\nlast lines of %s:\n%s", err, s.logPath, s.logTail(20))
	}
	return s, nil
}

// buildService runs `go build -o <dir>/checkout ./cmd/checkout` in the module root.
func buildService(ctx context.Context, dir string, out io.Writer) (string, error) {
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	if err != nil || root == "." || strings.TrimSpace(string(gomod)) == os.DevNull {
		return "", errors.New("cannot find the module root to build ./cmd/checkout: run the bench inside the module, or pass -bin")
	}
	bin := filepath.Join(dir, "checkout")
	start := time.Now()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/checkout")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/checkout: %w\n%s", err, tail(b, 30))
	}
	fmt.Fprintf(out, "bench: built ./cmd/checkout in %s\n", time.Since(start).Round(100*time.Millisecond))
	return bin, nil
}

// childEnv is base with the keys of set replaced.
func childEnv(base []string, set map[string]string) []string {
	env := make([]string, 0, len(base)+len(set))
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		if _, ok := set[k]; !ok {
			env = append(env, kv)
		}
	}
	for _, k := range sortedKeys(set) {
		env = append(env, k+"="+set[k])
	}
	return env
}

func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func (s *localService) waitHealthy(ctx context.Context, limit time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(limit)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.baseURL+"/healthz", nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-s.exited:
			return fmt.Errorf("checkout serve exited before it was healthy: %v", s.waitErr)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("checkout serve not healthy at %s/healthz after %s", s.baseURL, limit)
		}
	}
}

// stop ends the child (SIGTERM, then SIGKILL after 10s) and removes the temporary
// files; safe to call on a partly started service, and more than once.
func (s *localService) stop(out io.Writer) {
	if s.cmd != nil && s.cmd.Process != nil && s.exited != nil {
		select {
		case <-s.exited:
			fmt.Fprintf(out, "bench: checkout serve had exited early (%v); log %s\n", s.waitErr, s.logPath)
		default:
			_ = s.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-s.exited:
				fmt.Fprintln(out, "bench: checkout serve stopped")
			case <-time.After(10 * time.Second):
				_ = s.cmd.Process.Kill()
				<-s.exited
				fmt.Fprintln(out, "bench: checkout serve killed (no exit 10s after SIGTERM)")
			}
		}
		s.cmd = nil
	}
	if s.env != nil {
		// The service is gone: its queues go too (the next run would delete them).
		if err := resetBroker(context.Background(), s.env); err != nil {
			fmt.Fprintf(out, "bench: could not delete the bench's RabbitMQ queues: %v\n", err)
		}
		s.env = nil
	}
	if s.logFile != nil {
		s.logFile.Close()
		s.logFile = nil
	}
	if s.dir != "" {
		os.RemoveAll(s.dir)
		s.dir = ""
	}
}

func (s *localService) logTail(n int) string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return err.Error()
	}
	return tail(b, n)
}

// tail returns the last n lines of b.
func tail(b []byte, n int) string {
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}
