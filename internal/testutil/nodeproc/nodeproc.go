// Package nodeproc runs the server processes of private test nodes (PostgreSQL,
// RabbitMQ): each in a session of its own, stopped by its own process id together with
// every process it started, so neither a passing nor a failing test leaves a server behind.
package nodeproc

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Process is a started (or attached) server process and the tree under it.
type Process struct {
	// Pid is the process id of the server (the leader of its session and group).
	Pid  int
	cmd  *exec.Cmd
	done chan struct{}
}

var subreaperOnce sync.Once

// Start starts cmd in a new session, so the server and what it spawns form a group of
// their own that a terminal or the caller's signals do not reach, and reaps it on exit.
// The server gets SIGKILL if the caller dies without stopping it (a test binary killed
// by its timeout runs no cleanup). The caller becomes a child subreaper: grandchildren
// orphaned by a kill are its to reap.
func Start(cmd *exec.Cmd) (*Process, error) {
	subreaperOnce.Do(func() { unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) })
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setsid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Process{Pid: cmd.Process.Pid, cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	return p, nil
}

// StartDetached starts cmd in a new session for a process meant to outlive the caller
// (scripts): nothing waits for it here; stop it later with Attach(pid).Stop or Kill.
func StartDetached(cmd *exec.Cmd) (int, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setsid = true
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	pid := cmd.Process.Pid
	cmd.Process.Release()
	return pid, nil
}

// Attach returns the process pid, started by another command, if it is alive and its
// command line or environment contains mark (a data directory, a node name): a recycled
// pid is refused.
func Attach(pid int, mark string) (*Process, error) {
	if !Running(pid) {
		return nil, fmt.Errorf("process %d is not running", pid)
	}
	for _, f := range []string{"cmdline", "environ"} {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, f))
		if strings.Contains(strings.ReplaceAll(string(b), "\x00", " "), mark) {
			return &Process{Pid: pid}, nil
		}
	}
	return nil, fmt.Errorf("process %d is not the one started for %s", pid, mark)
}

// Exited is closed when the process has exited (only for processes this one started).
func (p *Process) Exited() <-chan struct{} { return p.done }

// Alive reports whether the server process still runs.
func (p *Process) Alive() bool {
	if p.done != nil {
		select {
		case <-p.done:
			return false
		default:
			return true
		}
	}
	s := state(p.Pid)
	return s != 0 && s != 'Z'
}

// Signal sends sig to the server process alone (a graceful stop asks the server).
func (p *Process) Signal(sig syscall.Signal) error { return syscall.Kill(p.Pid, sig) }

// Kill stops the process and every process under it at once with SIGKILL, as a machine
// that loses power would: the tree is frozen first (SIGSTOP) so nothing forks while it is
// collected, then killed, and Kill returns once all of it is gone.
func (p *Process) Kill() {
	syscall.Kill(p.Pid, syscall.SIGSTOP)
	tree := Tree(p.Pid)
	for _, pid := range tree {
		syscall.Kill(pid, syscall.SIGSTOP)
	}
	tree = Tree(p.Pid) // anything forked before the stop reached it
	syscall.Kill(-p.Pid, syscall.SIGKILL)
	for _, pid := range tree {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	p.waitGone(tree)
}

// Stop sends sig (a server's graceful shutdown signal) and waits up to timeout for the
// process to exit; then it kills whatever of the tree is left. It reports whether the
// server stopped by itself.
func (p *Process) Stop(sig syscall.Signal, timeout time.Duration) bool {
	tree := Tree(p.Pid)
	p.Signal(sig)
	deadline := time.After(timeout)
	graceful := true
wait:
	for p.Alive() {
		select {
		case <-deadline:
			graceful = false
			break wait
		case <-p.done:
		case <-time.After(20 * time.Millisecond):
		}
	}
	if p.Alive() {
		p.Kill()
		return false
	}
	for _, pid := range tree {
		if s := state(pid); s != 0 && s != 'Z' {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	p.waitGone(tree)
	return graceful
}

// waitGone waits until the server and tree have exited, reaping those that became this
// process's children.
func (p *Process) waitGone(tree []int) {
	if p.done != nil {
		<-p.done
	}
	for _, pid := range append([]int{p.Pid}, tree...) {
		for {
			var ws syscall.WaitStatus
			if n, _ := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil); n == pid {
				break
			}
			if s := state(pid); s == 0 || s == 'Z' {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// Tree lists every live descendant of pid (not pid itself), from /proc.
func Tree(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	children := map[int][]int{}
	for _, e := range entries {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pp := ppid(c); pp > 0 {
			children[pp] = append(children[pp], c)
		}
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		next := queue[0]
		queue = queue[1:]
		for _, c := range children[next] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// Running reports whether process pid exists and is not a zombie.
func Running(pid int) bool {
	s := state(pid)
	return s != 0 && s != 'Z'
}

// stat returns the fields of /proc/pid/stat after the command name.
func stat(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(b[i+1:]))
}

func ppid(pid int) int {
	f := stat(pid)
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

// state is the process state letter (R, S, Z...), 0 when there is no such process.
func state(pid int) byte {
	f := stat(pid)
	if len(f) < 1 || f[0] == "" {
		return 0
	}
	return f[0][0]
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
