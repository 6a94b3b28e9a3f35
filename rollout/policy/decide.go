package policy

import (
	"context"
	"time"

	"github.com/fleetwave/fleetwave/rollout"
)

// Request is everything one decision needs: the plan's built-in policies, the wave's soak, the
// fleet repo's Rego files at the rollout's commit, and the input.
type Request struct {
	Builtins rollout.Policies
	MinSoak  time.Duration
	Files    []rollout.PolicyFile `json:",omitempty"`
	Input    rollout.PolicyInput
	// Clock is when a rehearsal's plan clock started, when it is not the input rollout's start:
	// a catch-up is judged on the clock of the rollout that deferred its site.
	Clock time.Time `json:",omitzero"`
}

// WaitReason names the Rego wait_until in a decision's reasons.
const WaitReason = "policy wait_until"

// Decide evaluates the built-in policies and the Rego policies for the wave and combines them.
// Policies that cannot be evaluated deny: they fail closed.
func Decide(ctx context.Context, req Request) rollout.PolicyDecision {
	deny, waits := rollout.EvaluateBuiltins(req.Builtins, req.MinSoak, req.Input)
	if len(req.Files) > 0 {
		set, err := Cached(ctx, req.Files)
		if err != nil {
			deny = append(deny, "policies do not compile: "+err.Error())
		} else {
			d, until, err := set.Eval(ctx, req.Input)
			switch {
			case err != nil:
				deny = append(deny, "policy evaluation failed: "+err.Error())
			default:
				deny = append(deny, d...)
				if !until.IsZero() {
					waits[WaitReason+" "+until.UTC().Format(time.RFC3339)] = until
				}
			}
		}
	}
	return rollout.Combine(req.Input.Now, deny, waits)
}
