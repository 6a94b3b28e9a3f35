//go:build e2e

package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// The fleetwave binary the tests run: built once per test run, the first time a test asks,
// in a directory removed when the run ends.
var fleetwaveBin struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if fleetwaveBin.dir != "" {
		os.RemoveAll(fleetwaveBin.dir)
	}
	os.Exit(code)
}

// buildFleetwave returns the real binary, building it the first time.
func buildFleetwave(t testing.TB) string {
	t.Helper()
	b := &fleetwaveBin
	b.once.Do(func() {
		if b.dir, b.err = os.MkdirTemp("", "fleetwave-e2e-"); b.err != nil {
			return
		}
		b.path = filepath.Join(b.dir, "fleetwave")
		cmd := exec.Command("go", "build", "-o", b.path, "./cmd/fleetwave")
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}
