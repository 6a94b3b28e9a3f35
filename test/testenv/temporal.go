package testenv

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
)

// Temporal is a running Temporal dev server.
type Temporal struct {
	// Address is the frontend's host:port.
	Address string
	// UI is the web UI's base URL.
	UI string
}

// TemporalBinary finds the Temporal CLI: $FLEETWAVE_TEMPORAL, else .tools/bin/temporal at the
// repository root (where `make tools` puts it).
func TemporalBinary() (string, error) {
	if p := os.Getenv("FLEETWAVE_TEMPORAL"); p != "" {
		return p, nil
	}
	_, file, _, _ := runtime.Caller(0)
	p := filepath.Join(filepath.Dir(file), "..", "..", ".tools", "bin", "temporal")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("temporal CLI not found at %s: run `make tools` or set FLEETWAVE_TEMPORAL", p)
	}
	return p, nil
}

// FreePort returns a port free on 127.0.0.1 at the time of the call.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// StartTemporal starts `temporal server start-dev` in memory on free ports, with fleetwave's
// search attributes registered, and stops it when the test ends. It fails the test if the
// CLI is missing: `make test` builds it, and a skipped end-to-end test would hide failures.
func StartTemporal(t testing.TB, searchAttributes ...string) *Temporal {
	t.Helper()
	bin, err := TemporalBinary()
	if err != nil {
		t.Fatal(err)
	}
	port, uiPort := FreePort(t), FreePort(t)
	args := []string{"server", "start-dev", "--ip", "127.0.0.1", "--port", strconv.Itoa(port),
		"--ui-port", strconv.Itoa(uiPort), "--log-level", "error"}
	for _, sa := range searchAttributes {
		args = append(args, "--search-attribute", sa+"=Keyword")
	}
	cmd := exec.Command(bin, args...)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start temporal dev server: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	tp := &Temporal{Address: fmt.Sprintf("127.0.0.1:%d", port), UI: fmt.Sprintf("http://127.0.0.1:%d", uiPort)}
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := client.Dial(client.Options{HostPort: tp.Address, Logger: quietLogger{}})
		if err == nil {
			_, err = c.CheckHealth(context.Background(), &client.CheckHealthRequest{})
			c.Close()
			if err == nil {
				return tp
			}
		}
		select {
		case err := <-done:
			t.Fatalf("temporal dev server exited: %v\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("temporal dev server not ready after 60s: %v\n%s", err, out.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// quietLogger drops the SDK's connection retries while the server starts.
type quietLogger struct{}

func (quietLogger) Debug(string, ...any) {}
func (quietLogger) Info(string, ...any)  {}
func (quietLogger) Warn(string, ...any)  {}
func (quietLogger) Error(string, ...any) {}
