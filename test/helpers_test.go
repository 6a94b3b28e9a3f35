//go:build e2e

package test

import (
	"testing"
	"time"
)

// eventually polls cond until it holds, for at most within, and fails the test naming what it
// waited for and the last state cond reported.
func eventually(t testing.TB, what string, within time.Duration, cond func() (ok bool, state string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; last seen: %s", within, what, state)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitFor is eventually for 30 seconds, for a condition with no state worth reporting.
func waitFor(t testing.TB, what string, ok func() bool) {
	t.Helper()
	eventually(t, what, 30*time.Second, func() (bool, string) { return ok(), "not yet" })
}
