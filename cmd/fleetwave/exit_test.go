package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/serviceerror"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestExitCodes: one rule for every command. 2 when the command could not run (a usage error,
// with the command's usage line; Temporal unreachable), 1 when the thing checked is bad, 0 ok.
func TestExitCodes(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "fleetwave.yaml")
	if err := os.WriteFile(bad, []byte("apiVersion: fleetwave.dev/v1alpha1\nkind: RolloutPlan\nspec: {sites: []}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, c := range []struct {
		args  []string
		code  int
		usage string // the usage line the error must carry
	}{
		{[]string{"status"}, 2, "Usage: fleetwave status ROLLOUT [flags]"},
		{[]string{"frobnicate"}, 2, "Usage: fleetwave [flags]"},
		{[]string{"list", "--bogus"}, 2, "Usage: fleetwave list [flags]"},
		{[]string{"start", "abc"}, 2, "Usage: fleetwave start COMMIT [flags]"}, // --fleet is required
		{[]string{"status", "x", "--timeout", "soon"}, 2, "Usage: fleetwave status ROLLOUT [flags]"},
		{[]string{"serve", "--driver", "vm", "--repo", "file:///nowhere"}, 2, "Usage: fleetwave serve [flags]"},
		{[]string{"list", "--log-format", "yaml", "--address", "127.0.0.1:1"}, 2, ""},
		{[]string{"list", "--address", "127.0.0.1:1"}, 2, ""}, // nothing listens there
		{[]string{"plan", "validate", bad}, 1, ""},
		{[]string{"version"}, 0, ""},
	} {
		var out bytes.Buffer
		err := Run(ctx, c.args, &out, &out)
		code := 0
		if err != nil {
			code = exitCode(err)
		}
		if code != c.code {
			t.Errorf("fleetwave %s: exit %d (%v), want %d", strings.Join(c.args, " "), code, err, c.code)
		}
		if c.usage != "" && (err == nil || !strings.Contains(err.Error(), c.usage)) {
			t.Errorf("fleetwave %s: %v, want the usage line %q", strings.Join(c.args, " "), err, c.usage)
		}
	}
}

// TestCompletionWithoutTemporal: completing a rollout ID when Temporal does not answer gives
// nothing, with the error directive, within the completion timeout.
func TestCompletionWithoutTemporal(t *testing.T) {
	start := time.Now()
	out, _, err := run(t, "__complete", "status", "--address", "127.0.0.1:1", "rollout/")
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(out), "\n"); lines[0] != ":5" || len(lines) < 1 {
		t.Errorf("completion printed %q, want only the directive :5 (error, no files)", out)
	}
	if took := time.Since(start); took > completionTimeout+2*time.Second {
		t.Errorf("completion took %s", took)
	}
}

// Temporal answers a long poll with DeadlineExceeded before the caller's own deadline: that is
// still --timeout passing, not a connection error.
func TestTimedOut(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	for _, err := range []error{
		context.DeadlineExceeded,
		fmt.Errorf("get result: %w", context.DeadlineExceeded),
		serviceerror.NewDeadlineExceeded("deadline exceeded"),
		status.Error(codes.DeadlineExceeded, "context deadline exceeded"),
	} {
		if !timedOut(ctx, err) {
			t.Errorf("timedOut(%v) = false with a deadline set", err)
		}
		if timedOut(context.Background(), err) {
			t.Errorf("timedOut(%v) = true without a deadline", err)
		}
	}
	if timedOut(ctx, status.Error(codes.Unavailable, "connection refused")) {
		t.Error("an unavailable server counted as the timeout")
	}
	past, cancelPast := context.WithTimeout(context.Background(), -time.Second)
	defer cancelPast()
	if !timedOut(past, errors.New("any error")) {
		t.Error("an expired context did not count as the timeout")
	}
}
