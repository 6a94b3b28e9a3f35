package kubelab

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fleetwave/fleetwave/internal/devtemporal"
)

// stopGrace is how long a process has to exit after SIGTERM before it is killed.
const stopGrace = 5 * time.Second

// tailLines is how many lines of a log file a failure shows.
const tailLines = 30

// process is a child process whose standard output and error go to a log file. It can be
// started again after it stopped; the log file is appended to.
type process struct {
	name string // key in Lab.RSS, e.g. "a/kube-apiserver"
	bin  string
	args []string
	env  []string // added to the test's environment
	log  string   // path of the log file

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	err  error         // cmd.Wait's result, once done is closed
	// stopping is set by stop, so an exit it caused is not reported as unexpected.
	stopping bool
}

// start starts the process. It fails if the process is running.
func (p *process) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && !isClosed(p.done) {
		return fmt.Errorf("start %s: already running", p.name)
	}
	out, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.err, p.stopping = cmd, done, nil, false
	go func() {
		err := cmd.Wait()
		out.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

// stop sends SIGTERM, waits up to stopGrace for the process to exit, then kills it. It does
// nothing if the process is not running.
func (p *process) stop() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	if cmd == nil || isClosed(done) {
		p.mu.Unlock()
		return
	}
	p.stopping = true
	p.mu.Unlock()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(stopGrace):
		_ = cmd.Process.Kill()
		<-done
	}
}

// kill kills the process with SIGKILL and waits for it to exit. It does nothing if the
// process is not running.
func (p *process) kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	if cmd == nil || isClosed(done) {
		p.mu.Unlock()
		return
	}
	p.stopping = true
	p.mu.Unlock()
	_ = cmd.Process.Kill()
	<-done
}

// exited reports whether the process exited without stop or kill being called, and with
// what error.
func (p *process) exited() (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || !isClosed(p.done) || p.stopping {
		return false, nil
	}
	return true, p.err
}

// ran reports whether the process was ever started. A nil process never was.
func (p *process) ran() bool {
	if p == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil
}

// pid returns the process id, or 0 if the process is not running.
func (p *process) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || isClosed(p.done) {
		return 0
	}
	return p.cmd.Process.Pid
}

// failed returns an error saying the process exited, with its exit status, if it did.
func (p *process) failed() error {
	if ok, err := p.exited(); ok {
		return fmt.Errorf("%s exited: %v (log %s)", p.name, err, p.log)
	}
	return nil
}

// rss returns the resident memory of the process in bytes, from /proc/<pid>/status.
func (p *process) rss() (int64, error) {
	pid := p.pid()
	if pid == 0 {
		return 0, fmt.Errorf("rss of %s: not running", p.name)
	}
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, fmt.Errorf("rss of %s: %w", p.name, err)
	}
	for line := range strings.Lines(string(status)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("rss of %s: parse %q: %w", p.name, line, err)
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("rss of %s: no VmRSS in /proc/%d/status", p.name, pid)
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// tail returns the last n lines of the file at path (reading at most its last 256 KiB).
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	const maxRead = 256 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > maxRead {
		_, _ = f.Seek(fi.Size()-maxRead, io.SeekStart)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return fmt.Sprintf("(read log: %v)", err)
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// freePort returns a TCP port free on 127.0.0.1 at the time of the call, below the kernel's
// ephemeral range (devtemporal.FreePort), so that no outgoing connection of a test running
// beside takes it before the caller listens on it.
func freePort() (int, error) {
	p, err := devtemporal.FreePort()
	if err != nil {
		return 0, fmt.Errorf("pick a free port: %w", err)
	}
	return p, nil
}

// ports hands out free ports of 127.0.0.1, never the same one twice, so that processes
// started together do not collide even when the kernel offers a port again after it was
// closed.
type ports struct {
	mu   sync.Mutex
	used map[int]bool
}

// addr returns "127.0.0.1:<port>" for a free port not handed out before.
func (ps *ports) addr() (string, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.used == nil {
		ps.used = map[int]bool{}
	}
	for range 100 {
		p, err := freePort()
		if err != nil {
			return "", err
		}
		if !ps.used[p] {
			ps.used[p] = true
			return "127.0.0.1:" + strconv.Itoa(p), nil
		}
	}
	return "", fmt.Errorf("pick a free port: 100 tries gave ports already in use")
}
