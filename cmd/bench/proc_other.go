//go:build !linux

package main

import "syscall"

// childSysProcAttr: no special attributes off Linux (stop still ends the child on every
// path the bench controls).
func childSysProcAttr() *syscall.SysProcAttr { return nil }
