package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/fleetwave/fleetwave/rollout"
	"github.com/fleetwave/fleetwave/workflows"
)

// Kinds of the JSON objects only the CLI prints (rollout.Kind* has the others).
const (
	kindRolloutRef    = "RolloutRef"
	kindControlResult = "ControlResult"
	kindVoteResult    = "VoteResult"
	kindPlanSummary   = "PlanSummary"
	kindVersion       = "Version"
)

// rolloutRef is what `fleetwave start -o json` prints without --wait: the rollout it started.
type rolloutRef struct {
	rollout.TypeMeta
	Rollout string `json:"rollout"`
	Fleet   string `json:"fleet"`
	Commit  string `json:"commit"`
}

// rolloutList is what `fleetwave list -o json` prints.
type rolloutList struct {
	rollout.TypeMeta
	Items []workflows.Summary `json:"items"`
}

// siteList is what `fleetwave sites -o json` prints.
type siteList struct {
	rollout.TypeMeta
	Items []siteReport `json:"items"`
}

// controlResult and voteResult are what the control and vote commands print with -o json.
type controlResult struct {
	rollout.TypeMeta
	Rollout string `json:"rollout"`
	workflows.ControlResult
}

type voteResult struct {
	rollout.TypeMeta
	Rollout string `json:"rollout"`
	workflows.VoteResult
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
