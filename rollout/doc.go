// Package rollout is fleetwave's pure domain model: the rollout plan (fleetwave.yaml) with
// position-aware parsing and validation, wave resolution, site observations, verdicts and the
// status of a rollout.
//
// It does no I/O and reads no clock, so Temporal workflow code may call it directly. The only
// non-standard dependency is the YAML parser, used because it keeps line and column positions.
package rollout
