//go:build !linux

package main

import "syscall"

// childSysProcAttr: no special attributes off Linux (stop still ends the child on every
// path the bench controls).
func childSysProcAttr() *syscall.SysProcAttr { return nil }

// raiseFileLimit: left to the system off Linux (0: the limit is not known).
func raiseFileLimit(uint64) (uint64, error) { return 0, nil }
