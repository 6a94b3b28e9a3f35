package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"go.temporal.io/sdk/client"

	"github.com/fleetwave/fleetwave/rollout"
	"github.com/fleetwave/fleetwave/workflows"
)

// dialRollouts connects to Temporal from the standard environment for a command that reads or
// controls rollouts. The caller closes the returned Temporal client.
func dialRollouts(ctx context.Context) (*workflows.Client, client.Client, error) {
	tc, err := dialTemporal(ctx, nil, "")
	if err != nil {
		return nil, nil, err
	}
	return workflows.NewClient(tc, ""), tc, nil
}

// writeJSON writes v as indented JSON when output is "json" and reports whether it did; text
// (or no format) leaves the writing to the caller, anything else is an error.
func writeJSON(w io.Writer, output string, v any) (bool, error) {
	switch output {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return true, enc.Encode(v)
	case "", "text":
		return false, nil
	}
	return false, fmt.Errorf("unknown output format %q: use text or json", output)
}

// formatChecks is the one-line form of health measurements: "error-rate=0.004 ok, smoke=?".
func formatChecks(checks []rollout.CheckResult) string {
	parts := make([]string, 0, len(checks))
	for _, c := range checks {
		switch {
		case c.Unknown:
			parts = append(parts, c.Name+"=?")
		case c.OK:
			parts = append(parts, fmt.Sprintf("%s=%g ok", c.Name, c.Value))
		default:
			parts = append(parts, fmt.Sprintf("%s=%g FAIL", c.Name, c.Value))
		}
	}
	return strings.Join(parts, ", ")
}
