package activities

import (
	"context"

	"github.com/fleetwave/fleetwave/rollout"
	"github.com/fleetwave/fleetwave/rollout/policy"
)

// PolicyRequest is what EvaluatePolicy decides on: the plan's built-ins, the Rego files and the
// input the policies see.
type PolicyRequest = policy.Request

// EvaluatePolicy decides whether a wave may start: the plan's built-in policies and the fleet's
// Rego policies, evaluated at the workflow's time. It runs as a local activity, so the
// decision is recorded in the history and a later edit of a policy cannot change a replay.
// Policies that cannot be evaluated deny (fail closed); it never returns an error.
func EvaluatePolicy(ctx context.Context, req PolicyRequest) (rollout.PolicyDecision, error) {
	return policy.Decide(ctx, req), nil
}
