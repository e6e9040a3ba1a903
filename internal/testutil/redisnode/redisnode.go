// Package redisnode starts a private redis-server for tests that need one of their own
// (TLS only, client certificates required) on a free loopback port under t.TempDir(),
// stopped by its process id at cleanup. It never touches the machine's shared Redis.
package redisnode

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/checkout-backend/checkout/internal/testutil/nodeproc"
)

// TLS are the server's files: its certificate and key, and the CA client certificates
// must chain to.
type TLS struct {
	CertFile, KeyFile, CAFile string
	// Probe is a client certificate and key of that CA the harness uses to see the
	// server answer.
	ProbeCert, ProbeKey string
}

// Node is a running redis-server.
type Node struct {
	// Port is its TLS port (it has no plain one).
	Port int
	proc *nodeproc.Process
}

// URL is the node's rediss:// URL on database 0.
func (n *Node) URL() string { return fmt.Sprintf("rediss://127.0.0.1:%d/0", n.Port) }

// StartTLS runs redis-server with only a TLS port that requires client certificates
// (tls-auth-clients yes) until t ends. Where redis-server is missing or does not start,
// the test is skipped with one line saying why (failed when CI is set).
func StartTLS(t testing.TB, opt TLS) *Node {
	t.Helper()
	bin, err := nodeproc.LookBinary("redis-server", "/usr/bin", "/usr/local/bin")
	if err != nil {
		nodeproc.Unavailable(t, "redisnode: redis-server is not installed: %v", err)
	}
	port, err := nodeproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	logPath := filepath.Join(dir, "redis.log")
	cmd := exec.Command(bin, "--port", "0", "--tls-port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--tls-cert-file", opt.CertFile, "--tls-key-file", opt.KeyFile, "--tls-ca-cert-file", opt.CAFile, "--tls-auth-clients", "yes",
		"--save", "", "--appendonly", "no", "--dir", dir, "--logfile", logPath)
	proc, err := nodeproc.Start(cmd)
	if err != nil {
		nodeproc.Unavailable(t, "redisnode: redis-server cannot start: %v", err)
	}
	t.Cleanup(proc.Kill)
	probe, err := probeConfig(opt)
	if err != nil {
		t.Fatal(err)
	}
	// Ready once it completes a handshake with a client certificate.
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port), probe)
		if err == nil {
			conn.Close()
			return &Node{Port: port, proc: proc}
		}
		if !proc.Alive() || time.Now().After(deadline) {
			nodeproc.Unavailable(t, "redisnode: redis-server with TLS does not answer on %d: %v; log: %s", port, err, nodeproc.LogTail(logPath, 3))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func probeConfig(opt TLS) (*tls.Config, error) {
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
