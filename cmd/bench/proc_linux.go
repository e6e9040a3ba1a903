package main

import (
	"fmt"
	"syscall"
)

// childSysProcAttr puts the service in its own process group, so that a terminal's
// Ctrl-C reaches only the bench (which stops the attack, checks the database, then stops
// the service), and has the kernel kill it should the bench die without cleaning up.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// raiseFileLimit raises the bench process's soft limit of open files to at least need
// when it is lower (up to the hard limit, or past it when the process may), and returns
// the soft limit in force; an error says it stays below need. (The Go runtime already
// raises the soft limit to the hard one at start. A child started after a Setrlimit
// inherits the new limit; the service, a Go program too, then raises its own soft limit
// to that hard limit.)
func raiseFileLimit(need uint64) (uint64, error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, err
	}
	if l.Cur >= need {
		return l.Cur, nil
	}
	if l.Max < need {
		// Only a privileged process may raise the hard limit; try, then settle for it.
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: need, Max: need}); err == nil {
			return need, nil
		}
	}
	want := syscall.Rlimit{Cur: min(need, l.Max), Max: l.Max}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
		return l.Cur, err
	}
	if want.Cur < need {
		return want.Cur, fmt.Errorf("the hard limit is %d, below the %d needed (raise it: ulimit -Hn)", l.Max, need)
	}
	return want.Cur, nil
}
