package procstat

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Read reads /proc/<pid>/stat.
func Read(pid int) (Stat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return Stat{}, err
	}
	return Parse(b)
}

// CPU is the CPU time, in clock ticks, of pid with the times of the children it
// reaped; withChildren adds every live child's (for the postmaster: its backends and
// background processes, whose times move to its own once they exit and are reaped, so
// the sum only grows).
func CPU(pid int, withChildren bool) (uint64, error) {
	st, err := Read(pid)
	if err != nil {
		return 0, err
	}
	total := st.Total()
	if !withChildren {
		return total, nil
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil || child == pid {
			continue
		}
		cs, err := Read(child)
		if err != nil || cs.PPID != pid {
			continue // gone since the listing, or not a child
		}
		total += cs.Total()
	}
	return total, nil
}

// RabbitBeam finds the RabbitMQ server's Erlang VM: a beam.smp whose command line
// boots rabbit (rabbitmqctl runs a beam.smp of its own, briefly).
func RabbitBeam() (int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil || strings.TrimSpace(string(comm)) != "beam.smp" {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err == nil && strings.Contains(strings.ReplaceAll(string(cmdline), "\x00", " "), "-s rabbit boot") {
			return pid, nil
		}
	}
	return 0, errors.New("no RabbitMQ beam.smp (-s rabbit boot) on this machine")
}
