package node

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Process is a started (or attached) server process and the tree under it. It is the one
// way this package (and the tests and commands that run servers) starts a process and
// stops it: by its own process id, never by name.
type Process struct {
	// Pid is the process id of the server (the leader of its session and group).
	Pid  int
	done chan struct{} // closed when a process this one started and waits for exits
}

// StartOptions say how Start runs a command.
type StartOptions struct {
	// Log, when set, receives the command's standard output and error (appended).
	Log string
	// Detached leaves the process running when the caller exits (scripts: make ha);
	// nothing waits for it here, and it is stopped later through Attach. Otherwise it
	// gets SIGKILL when the caller dies without stopping it (a test binary killed by its
	// timeout runs no cleanup), and it is reaped on exit.
	Detached bool
}

var subreaperOnce sync.Once

// Start starts cmd in a new session, so the server and what it spawns form a group of
// their own that a terminal or the caller's signals do not reach. Unless detached, the
// caller becomes a child subreaper: grandchildren orphaned by a kill are its to reap.
func Start(cmd *exec.Cmd, opt StartOptions) (*Process, error) {
	if opt.Log != "" {
		logf, err := os.OpenFile(opt.Log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return nil, err
		}
		defer logf.Close() // the child holds its own copy
		cmd.Stdout, cmd.Stderr = logf, logf
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setsid = true
	if opt.Detached {
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		pid := cmd.Process.Pid
		cmd.Process.Release()
		return &Process{Pid: pid}, nil
	}
	subreaperOnce.Do(func() { unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) })
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Process{Pid: cmd.Process.Pid, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	return p, nil
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

// Exited is closed when the process has exited (only for attached processes this one
// started; nil otherwise).
func (p *Process) Exited() <-chan struct{} { return p.done }

// Alive reports whether the server process still runs.
func (p *Process) Alive() bool {
	if p == nil {
		return false
	}
	if p.done != nil {
		select {
		case <-p.done:
			return false
		default:
			return true
		}
	}
	return Running(p.Pid)
}

// Signal sends sig to the server process alone (a graceful stop asks the server).
func (p *Process) Signal(sig syscall.Signal) error { return syscall.Kill(p.Pid, sig) }

// Kill stops the process and every process under it at once with SIGKILL, as a machine
// that loses power would: the tree is frozen first (SIGSTOP) so nothing forks while it is
// collected, then killed, and Kill returns once all of it is gone. Safe on nil and twice.
func (p *Process) Kill() {
	if p == nil {
		return
	}
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
// server stopped by itself. Safe on nil.
func (p *Process) Stop(sig syscall.Signal, timeout time.Duration) bool {
	if p == nil {
		return true
	}
	tree := Tree(p.Pid)
	p.Signal(sig)
	deadline := time.After(timeout)
wait:
	for p.Alive() {
		select {
		case <-deadline:
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
		if Running(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	p.waitGone(tree)
	return true
}

// WaitReady checks ready every interval until it holds. It fails when the process exits
// first or ctx ends, with what and the tail of the server's log (logTail, may be nil).
func (p *Process) WaitReady(ctx context.Context, what string, every time.Duration, logTail func() string, ready func() bool) error {
	tail := func() string {
		if logTail == nil {
			return ""
		}
		return "; log: " + logTail()
	}
	for {
		if !p.Alive() {
			return fmt.Errorf("%s exited%s", what, tail())
		}
		if ready() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w%s", what, ctx.Err(), tail())
		case <-p.done:
		case <-time.After(every):
		}
	}
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
			if n, _ := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil); n == pid || !Running(pid) {
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

// server is what every kind of node shares: the process it runs as.
type server struct {
	proc *Process
}

// Pid is the server's process id (0 before it started).
func (s *server) Pid() int {
	if s.proc == nil {
		return 0
	}
	return s.proc.Pid
}

// Alive reports whether the server's process runs.
func (s *server) Alive() bool { return s.proc.Alive() }

// Kill crashes the server: SIGKILL to it and everything it started at once, as a lost
// machine would. It returns once all of it is gone. Safe to call twice.
func (s *server) Kill() { s.proc.Kill() }
