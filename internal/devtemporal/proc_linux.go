package devtemporal

import "syscall"

// procAttr puts the server in its own process group, so that a Ctrl-C in the terminal reaches
// fleetwave, which then stops the server in order, instead of killing both at once; and has the
// kernel kill the server when fleetwave dies, even by kill -9, so no orphan keeps the ports.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
