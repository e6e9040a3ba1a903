package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// RedisTLS are a TLS-only redis-server's files: its certificate and key, and the CA
// client certificates must chain to.
type RedisTLS struct {
	CertFile, KeyFile, CAFile string
	// ProbeCert and ProbeKey are a client certificate and key of that CA the harness uses
	// to see the server answer.
	ProbeCert, ProbeKey string
}

// Redis is a running redis-server.
type Redis struct {
	server
	// Port is its TLS port (it has no plain one).
	Port int
}

// URL is the node's rediss:// URL on database 0.
func (n *Redis) URL() string { return fmt.Sprintf("rediss://127.0.0.1:%d/0", n.Port) }

// StartRedisTLS runs redis-server under t.TempDir() with only a TLS port that requires
// client certificates (tls-auth-clients yes) until t ends. Where redis-server is missing
// or does not start, the test is skipped with one line saying why (failed when CI is set).
func StartRedisTLS(t testing.TB, opt RedisTLS) *Redis {
	t.Helper()
	if _, err := probeConfig(opt); err != nil {
		t.Fatal(err) // the test's own files: not a reason to skip
	}
	var dir string
	return forTest(t, "redis-server with TLS", &dir, 30*time.Second, func(ctx context.Context) (*Redis, error) { return LaunchRedisTLS(ctx, dir, opt) })
}

// LaunchRedisTLS starts a TLS-only redis-server in dir (no persistence) and waits until
// it completes a handshake with the probe certificate. On an error after the server
// started, the returned node is non-nil so it can be killed.
func LaunchRedisTLS(ctx context.Context, dir string, opt RedisTLS) (*Redis, error) {
	bin, err := LookBinary("redis-server", "/usr/bin", "/usr/local/bin")
	if err != nil {
		return nil, err
	}
	probe, err := probeConfig(opt)
	if err != nil {
		return nil, err
	}
	n := &Redis{}
	if n.Port, err = FreePort(); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "redis.log")
	cmd := exec.Command(bin, "--port", "0", "--tls-port", strconv.Itoa(n.Port), "--bind", "127.0.0.1",
		"--tls-cert-file", opt.CertFile, "--tls-key-file", opt.KeyFile, "--tls-ca-cert-file", opt.CAFile, "--tls-auth-clients", "yes",
		"--save", "", "--appendonly", "no", "--dir", dir, "--logfile", logPath)
	if n.proc, err = Start(cmd, StartOptions{}); err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", n.Port)
	return n, n.proc.WaitReady(ctx, "redis-server with TLS on "+addr, 20*time.Millisecond, func() string { return LogTail(logPath, 3) }, func() bool {
		conn, err := tls.Dial("tcp", addr, probe)
		if err == nil {
			conn.Close()
		}
		return err == nil
	})
}

func probeConfig(opt RedisTLS) (*tls.Config, error) {
	ca, err := os.ReadFile(opt.CAFile)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca)
	pair, err := tls.LoadX509KeyPair(opt.ProbeCert, opt.ProbeKey)
	if err != nil {
		return nil, err
	}
	return &tls.Config{RootCAs: roots, ServerName: "127.0.0.1",
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }}, nil
}
