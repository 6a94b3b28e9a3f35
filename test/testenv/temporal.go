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
	return StartTemporalWith(t, devtemporal.Options{SearchAttributes: searchAttributes})
}

// StartTemporalWith is StartTemporal with more options (always headless).
func StartTemporalWith(t testing.TB, o devtemporal.Options) *devtemporal.Server {
	t.Helper()
	o.Headless = true
	s, err := devtemporal.Start(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}
