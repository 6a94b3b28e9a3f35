package devtemporal

import "syscall"

// ChildAttr puts a child process of fleetwave (the Temporal dev server, a rehearsal's worker)
// in its own process group, so that a Ctrl-C in the terminal reaches fleetwave, which then
// stops the child in order, instead of killing both at once; and has the kernel kill the child
// when fleetwave dies, even by kill -9, so no orphan keeps its ports.
func ChildAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
