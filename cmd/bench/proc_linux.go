package main

import "syscall"

// childSysProcAttr puts the service in its own process group, so that a terminal's
// Ctrl-C reaches only the bench (which stops the attack, checks the database, then stops
// the service), and has the kernel kill it should the bench die without cleaning up.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
