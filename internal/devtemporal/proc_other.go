//go:build !linux

package devtemporal

import "syscall"

// procAttr puts the server in its own process group, so that a Ctrl-C in the terminal reaches
// fleetwave, which then stops the server in order. Without Linux's parent-death signal, a
// fleetwave killed with kill -9 leaves the server running.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
