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
//
// A worker whose activity context carries a time scale (WithTimeScale: a rehearsal's) evaluates
// on the plan's clock, which starts with the rollout (rollout.PlanClock; a catch-up's with the
// rollout that deferred its site, Request.Clock), and returns the
// decision's times on the real one.
func EvaluatePolicy(ctx context.Context, req PolicyRequest) (rollout.PolicyDecision, error) {
	start := req.Clock
	if start.IsZero() {
		start = req.Input.Rollout.StartedAt
	}
	if k, ok := ctx.Value(timeScaleKey{}).(float64); ok && k > 1 && !start.IsZero() {
		c := rollout.PlanClock{Start: start, Scale: k}
		req.Input = c.PlanInput(req.Input)
		return c.RealDecision(policy.Decide(ctx, req)), nil
	}
	return policy.Decide(ctx, req), nil
}

type timeScaleKey struct{}

// WithTimeScale returns ctx carrying a rehearsal's time scale, for a worker's
// BackgroundActivityContext: EvaluatePolicy (a local activity) then decides on the plan's clock.
func WithTimeScale(ctx context.Context, k float64) context.Context {
	return context.WithValue(ctx, timeScaleKey{}, k)
}
