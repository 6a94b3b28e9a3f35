package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"go.temporal.io/sdk/client"

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
