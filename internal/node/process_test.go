package node_test

import (
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/checkout-backend/checkout/internal/node"
)

// tree lists a server's process and every process under it (a postmaster's backends, an
// Erlang VM's helpers).
func tree(n interface{ Pid() int }) []int { return append([]int{n.Pid()}, node.Tree(n.Pid())...) }

// running lists the pids that still run.
func running(pids []int) []int {
	var out []int
	for _, p := range pids {
		if node.Running(p) {
			out = append(out, p)
		}
	}
	return out
}

// withChildren waits until p has n processes under it and returns p's pid and theirs.
func withChildren(t *testing.T, p *node.Process, n int) []int {
	t.Helper()
	var procs []int
	for deadline := time.Now().Add(10 * time.Second); len(procs) < n+1; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d never had %d processes under it: %v", p.Pid, n, procs)
		}
		procs = append([]int{p.Pid}, node.Tree(p.Pid)...)
	}
	return procs
}

// A process that started children (a shell with two sleeps) is killed with all of them,
// and one that ignores the graceful signal is killed when Stop's wait ends.
func TestProcess_KillAndStop_LeaveNoProcess(t *testing.T) {
	t.Parallel()
	log := t.TempDir() + "/out.log"
	p, err := node.Start(exec.Command("sh", "-c", "sleep 300 & sleep 300 & wait"), node.StartOptions{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	procs := withChildren(t, p, 2)
	p.Kill()
	if p.Alive() {
		t.Fatal("alive after Kill")
	}
	if left := running(procs); len(left) > 0 {
		t.Fatalf("processes left after Kill: %v", left)
	}
	p.Kill() // twice is safe

	stubborn, err := node.Start(exec.Command("sh", "-c", "trap '' TERM; sleep 300 & wait; sleep 300"), node.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	withChildren(t, stubborn, 1) // the trap is set before the sleep is forked
	if stubborn.Stop(syscall.SIGTERM, 200*time.Millisecond) {
		t.Fatal("Stop reports a graceful stop of a process that ignores SIGTERM")
	}
	if stubborn.Alive() {
		t.Fatal("alive after Stop")
	}
}
