// Package devtemporal runs a Temporal dev server (`temporal server start-dev`, from the
// Temporal CLI that `make tools` builds) as a child process on 127.0.0.1. `fleetwave dev` and
// the end-to-end tests use it. Running the CLI as a process, rather than embedding its server
// package, keeps fleetwave's go.mod free of the Temporal server's dependency tree.
package devtemporal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"go.temporal.io/sdk/client"
)

// Options configure the dev server. Zero ports pick free ones.
type Options struct {
	// Binary is the temporal CLI; "" means FindBinary.
	Binary string
	Port   int
	UIPort int
	// DBFile keeps the server's state across restarts; "" keeps it in memory.
	DBFile string
	// SearchAttributes are registered as Keyword attributes.
	SearchAttributes []string
	// Namespaces are created at start, beside "default".
	Namespaces []string
	// Headless disables the web UI.
	Headless bool
	// DynamicConfig are server settings as "key=value" (--dynamic-config-value), such as
	// "limit.historyCount.suggestContinueAsNew=100".
	DynamicConfig []string
}

// FastQueues is dynamic config that lets the dev server's history queues load new tasks as
// soon as they come. The dev server keeps every workflow on one history shard, whose transfer
// and timer queues load at most 20 times a second by default: once a burst is spent, every
// step through the server (a signal, an activity or workflow task dispatched, a child started)
// waits up to 50 ms, so a zero-bake wave takes about 0.5 s whatever fleetwave does. A
// production cluster spreads workflows over hundreds of shards, each with that rate. Values
// are strings for --dynamic-config-value (YAML).
var FastQueues = []string{
	"history.transferProcessorMaxPollRPS=1000",
	"history.timerProcessorMaxPollRPS=1000",
	"history.visibilityProcessorMaxPollRPS=1000",
}

// Server is a running dev server.
type Server struct {
	// Address is the frontend's host:port; UI the web UI's URL ("" when headless).
	Address string
	UI      string

	cmd  *exec.Cmd
	done chan struct{}
	err  error
	out  *syncBuffer
}

// FindBinary locates the Temporal CLI: $FLEETWAVE_TEMPORAL, then .tools/bin/temporal next to
// the running binary's parent directory (bin/fleetwave built by make), then .tools/bin in the working
// directory or any parent, then `temporal` on PATH.
func FindBinary() (string, error) {
	if p := os.Getenv("FLEETWAVE_TEMPORAL"); p != "" {
		return p, nil
	}
	var candidates []string
	if exe, err := os.Executable(); err == nil {
		candidates = append(candidates, filepath.Join(filepath.Dir(exe), "..", ".tools", "bin", "temporal"))
	}
	if wd, err := os.Getwd(); err == nil {
		for dir := wd; ; dir = filepath.Dir(dir) {
			candidates = append(candidates, filepath.Join(dir, ".tools", "bin", "temporal"))
			if filepath.Dir(dir) == dir {
				break
			}
		}
	}
	for _, c := range candidates {
		if fi, err := os.Stat(c); err == nil && !fi.IsDir() {
			return c, nil
		}
	}
	if p, err := exec.LookPath("temporal"); err == nil {
		return p, nil
	}
	return "", errors.New("temporal CLI not found: run `make tools` (builds .tools/bin/temporal) or set FLEETWAVE_TEMPORAL")
}

// FreePort returns a TCP port free on 127.0.0.1 at the time of the call, for a server started
// after it. It picks below the kernel's ephemeral range (32768 and up on Linux): a port from
// that range can be taken as the source port of any outgoing connection before the server
// listens on it ("address already in use").
func FreePort() (int, error) {
	for range 200 {
		p := lowPortBase + rand.IntN(lowPorts)
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		_ = ln.Close()
		return p, nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// The ports FreePort picks from: 20000 to 32767.
const (
	lowPortBase = 20000
	lowPorts    = 12768
)

// Start starts the dev server and waits until its frontend answers health checks.
func Start(ctx context.Context, o Options) (*Server, error) {
	bin := o.Binary
	if bin == "" {
		var err error
		if bin, err = FindBinary(); err != nil {
			return nil, err
		}
	}
	for _, p := range []*int{&o.Port, &o.UIPort} {
		if *p == 0 {
			free, err := FreePort()
			if err != nil {
				return nil, fmt.Errorf("pick a port for temporal: %w", err)
			}
			*p = free
		}
	}
	args := []string{"server", "start-dev", "--ip", "127.0.0.1", "--port", strconv.Itoa(o.Port), "--log-level", "error"}
	if o.Headless {
		args = append(args, "--headless")
	} else {
		args = append(args, "--ui-port", strconv.Itoa(o.UIPort))
	}
	if o.DBFile != "" {
		args = append(args, "--db-filename", o.DBFile)
	}
	for _, sa := range o.SearchAttributes {
		args = append(args, "--search-attribute", sa+"=Keyword")
	}
	for _, ns := range o.Namespaces {
		args = append(args, "--namespace", ns)
	}
	for _, kv := range o.DynamicConfig {
		args = append(args, "--dynamic-config-value", kv)
	}
	s := &Server{Address: net.JoinHostPort("127.0.0.1", strconv.Itoa(o.Port)), done: make(chan struct{}), out: &syncBuffer{}}
	if !o.Headless {
		s.UI = fmt.Sprintf("http://127.0.0.1:%d", o.UIPort)
	}
	s.cmd = exec.Command(bin, args...)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	s.cmd.SysProcAttr = ChildAttr()
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start temporal dev server: %w", err)
	}
	go func() {
		s.err = s.cmd.Wait()
		close(s.done)
	}()
	if err := s.waitReady(ctx, 90*time.Second); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

func (s *Server) waitReady(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var last error
	for {
		c, err := client.Dial(client.Options{HostPort: s.Address, Logger: quiet{}})
		if err == nil {
			_, err = c.CheckHealth(ctx, &client.CheckHealthRequest{})
			c.Close()
			if err == nil {
				return nil
			}
		}
		last = err
		select {
		case <-s.done:
			return fmt.Errorf("temporal dev server exited: %v: %s", s.err, s.out.String())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("temporal dev server at %s not ready after %s: %v", s.Address, limit, last)
		}
	}
}

// Stop interrupts the server, waits up to 15 seconds for it to exit, then kills it.
func (s *Server) Stop() {
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// Output returns what the server printed so far, for diagnostics.
func (s *Server) Output() string { return s.out.String() }

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 1<<20 {
		s.b.Reset()
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// quiet drops the SDK's connection retries while the server starts.
type quiet struct{}

func (quiet) Debug(string, ...any) {}
func (quiet) Info(string, ...any)  {}
func (quiet) Warn(string, ...any)  {}
func (quiet) Error(string, ...any) {}
