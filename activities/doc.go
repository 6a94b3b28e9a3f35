// Package activities holds fleetwave's Temporal activities: structs that own their
// dependencies (the fleet repo, the site driver) and thin methods that adapt gitops, deploy and
// rollout to Temporal, mapping permanent failures to non-retryable application errors.
package activities
