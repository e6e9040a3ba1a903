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

// A process that started children (a shell with two sleeps) is killed with all of them,
// and one that ignores the graceful signal is killed when Stop's wait ends.
func TestProcess_KillAndStop_LeaveNoProcess(t *testing.T) {
	t.Parallel()
	log := t.TempDir() + "/out.log"
	p, err := node.Start(exec.Command("sh", "-c", "sleep 300 & sleep 300 & wait"), node.StartOptions{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	var procs []int
	for deadline := time.Now().Add(10 * time.Second); len(procs) < 3; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the shell never forked both sleeps: %v", procs)
		}
		procs = append([]int{p.Pid}, node.Tree(p.Pid)...)
	}
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
	if stubborn.Stop(syscall.SIGTERM, 200*time.Millisecond) {
		t.Fatal("Stop reports a graceful stop of a process that ignores SIGTERM")
	}
	if stubborn.Alive() {
		t.Fatal("alive after Stop")
	}
}
