package testenv

import (
	"context"
	"testing"

	"github.com/fleetwave/fleetwave/internal/devtemporal"
)

// StartTemporal starts a headless in-memory Temporal dev server on free ports with the given
// Keyword search attributes, and stops it when the test ends. It fails the test when the
// Temporal CLI is missing: `make test` builds it, and a skipped end-to-end test would hide
// failures.
func StartTemporal(t testing.TB, searchAttributes ...string) *devtemporal.Server {
	t.Helper()
	s, err := devtemporal.Start(context.Background(), devtemporal.Options{SearchAttributes: searchAttributes, Headless: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}
