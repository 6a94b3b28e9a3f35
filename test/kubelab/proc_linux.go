package kubelab

import "syscall"

// sysProcAttr kills a child when the test binary dies (a panic, a timeout, a Ctrl-C), so no
// etcd or kube-apiserver outlives the test.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
