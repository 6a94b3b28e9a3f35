// Package runbook holds fleetwave's two runbooks as pure state machines: the rollout's (the gates
// before each wave, the wave as a child workflow, the revert and the end) and the wave's (its
// batches, their convergence, the bake and the failure budget). Each takes its state and one
// event (a fact its workflow observed) and returns the new state, the step to run next (nil: the
// step in progress goes on) and the effects to run at once. The workflows run what they return
// and feed back what happened, so every decision is here, deterministic and table-tested; this
// package does no I/O and imports only the domain model (rollout).
package runbook
