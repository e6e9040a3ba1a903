// Package node runs local servers for tests and scripts, without Docker: private
// PostgreSQL 15 nodes (primaries, streaming standbys, TLS), RabbitMQ nodes and clusters,
// a TLS-only redis-server, and the replicated stack of `make ha` and cmd/chaos built from
// them. Each server runs on free loopback ports under a directory of its own, as a
// Process started in a session of its own and stopped by its own process id; the
// machine's shared servers are never touched.
//
// Tests call the Start functions (StartPostgres, StartRabbit, StartRabbitCluster,
// StartRedisTLS), which stop the server at cleanup and skip the test (fail it when CI is
// set) where it cannot run here. Scripts call the Launch functions with a directory and
// Detached, and later the Open functions on that directory to kill, promote or stop.
package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
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
)

// forTest launches a server for t in *dir (a t.TempDir() when empty): what was started is
// killed at cleanup, on every path, and an error skips t with one line saying why (fails
// it when CI is set).
func forTest[N interface {
	comparable
	Kill()
}](t testing.TB, what string, dir *string, timeout time.Duration, launch func(ctx context.Context) (N, error)) N {
	t.Helper()
	if *dir == "" {
		*dir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	n, err := launch(ctx)
	var none N
	if n != none {
		t.Cleanup(n.Kill)
	}
	if err != nil {
		Unavailable(t, "%s cannot start here: %v", what, err)
	}
	return n
}

// Unavailable ends t when a node cannot run on this machine: a skip with one line saying
// why, or a failure when CI is set (a required suite that skipped must not make CI green).
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s (CI is set: a node that cannot start fails the run)", msg)
	}
	t.Skip(msg)
}

// ErrNoBinary means a server binary is not installed.
var ErrNoBinary = errors.New("binary not found")

// LookBinary finds name in dirs, then on PATH.
func LookBinary(name string, dirs ...string) (string, error) {
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%s: %w", name, ErrNoBinary)
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// LogTail returns the last n lines of a log file, for error messages.
func LogTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// OpenAccess makes dir and its parents traversable (o+x) for a server run as another
// OS user (PostgreSQL refuses to run as root); directories that already are stay as they are.
func OpenAccess(dir string) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	for d := dir; d != "/" && d != "."; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			return err
		}
		if st.Mode().Perm()&0o001 != 0 {
			continue
		}
		if err := os.Chmod(d, st.Mode().Perm()|0o011); err != nil {
			return err
		}
	}
	return nil
}

// postgresDir makes dir (and its parents) and, when this process is root, hands it to
// the postgres OS user, traversable by it: PostgreSQL, Patroni and PgBouncer refuse to
// run as root. It returns the credentials to run them with (nil when not root).
func postgresDir(dir string) (*syscall.Credential, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	cred, err := postgresUser()
	if err != nil || cred == nil {
		return nil, err
	}
	if err := OpenAccess(dir); err != nil {
		return nil, err
	}
	return cred, os.Chown(dir, int(cred.Uid), int(cred.Gid))
}

// dialable reports whether every address accepts a TCP connection now.
func dialable(addrs ...string) bool {
	for _, a := range addrs {
		c, err := net.DialTimeout("tcp", a, time.Second)
		if err != nil {
			return false
		}
		c.Close()
	}
	return true
}

// stateFile is where a server records itself in its directory, for the commands that act
// on it later (Open).
const stateFile = "node.json"

func writeState(dir string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, stateFile), b, 0o644)
}

// readState reads the state recorded in dir into v and returns dir made absolute.
func readState(dir string, v any) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return "", err
	}
	return dir, json.Unmarshal(b, v)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
