package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/fleetwave/fleetwave/rollout"
)

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
