//go:build !linux

package devtemporal

import "syscall"

// ChildAttr puts a child process of fleetwave (the Temporal dev server, a rehearsal's worker)
// in its own process group, so that a Ctrl-C in the terminal reaches fleetwave, which then
// stops the child in order. Without Linux's parent-death signal, a fleetwave killed with
// kill -9 leaves the child running.
func ChildAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
