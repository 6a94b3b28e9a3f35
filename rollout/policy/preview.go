package policy

import (
	"context"
	"time"

	"github.com/fleetwave/fleetwave/rollout"
)

// WavePreview is what the policies would decide for one wave of a rollout started at a given
// time, assuming every earlier wave runs at once and succeeds after its bake.
type WavePreview struct {
	Wave string `json:"wave"`
	// Outcome is allow, wait (then allowed at Start), deny, or "not reached" after a denial.
	Outcome string    `json:"outcome"`
	Start   time.Time `json:"start,omitzero"`
	// Reasons are the wait reasons or the denial messages.
	Reasons []string `json:"reasons,omitempty"`
}

// NotReached is the outcome of the waves after a denied one.
const NotReached = "not reached"

// maxWaits bounds the re-evaluations of one wave in a preview (back-to-back windows).
const maxWaits = 100

// Preview simulates the policy gates of a rollout of plan started at `at`.
func Preview(ctx context.Context, plan *rollout.Plan, files []rollout.PolicyFile, at time.Time) []WavePreview {
	var out []WavePreview
	var history []rollout.WaveStatus
	t := at
	denied := false
	for i, w := range plan.Waves {
		pv := WavePreview{Wave: w.Name, Outcome: NotReached}
		if denied {
			out = append(out, pv)
			continue
		}
		pv.Outcome = rollout.PolicyAllow
		for range maxWaits {
			in := rollout.PolicyInput{
				Rollout:       rollout.PolicyRollout{ID: "preview", Fleet: plan.Name, StartedAt: at},
				Wave:          plan.PolicyWave(i),
				PreviousWaves: rollout.PolicyHistory(history),
				Approvals:     []rollout.PolicyApproval{},
				Now:           t,
			}
			d := Decide(ctx, Request{Builtins: plan.Policies, MinSoak: plan.MinSoakFor(w), Files: files, Input: in})
			if d.Outcome == rollout.PolicyDeny {
				pv.Outcome, pv.Reasons, denied = rollout.PolicyDeny, d.Deny, true
				break
			}
			if d.Outcome == rollout.PolicyAllow {
				pv.Start = t
				break
			}
			pv.Outcome = rollout.PolicyWait
			pv.Reasons = append(pv.Reasons, d.Reasons...)
			t = d.WaitUntil
		}
		out = append(out, pv)
		if denied {
			continue
		}
		ws := rollout.NewWaveStatus(plan, i)
		ws.State, ws.StartedAt, ws.FinishedAt = rollout.StateSucceeded, t, t.Add(w.Bake)
		for j := range ws.Sites {
			ws.Sites[j].Verdict = rollout.VerdictHealthy
		}
		history = append(history, ws)
		t = ws.FinishedAt
	}
	return out
}
