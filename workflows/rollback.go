package workflows

import (
	"cmp"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/fleetwave/fleetwave/activities"
	"github.com/fleetwave/fleetwave/rollout"
)

// RollbackID is the workflow ID of the rollback of an ended rollout.
func RollbackID(rolloutID string) string { return "rollback/" + rolloutID }

// RollbackInput names an ended rollout to roll back, who asked, and why.
type RollbackInput struct {
	Rollout string
	By      string
	Reason  string `json:",omitempty"`
}

// RollbackResult says what the rollback did to each site the rollout had promoted.
type RollbackResult struct {
	// Reverted are the sites reverted now; Skipped says why each other one was left.
	Reverted []string `json:",omitempty"`
	Skipped  []string `json:",omitempty"`
	// Problems are the sites whose revert could not be written or applied, and why.
	Problems []string `json:",omitempty"`
	// Reverts are the revert commits, by site.
	Reverts map[string]string `json:",omitempty"`
}

// Rollback reverts, through git revert commits, every site an ended rollout promoted that
// still runs its promotion: the break-glass rollback of a rollout that already stopped (a
// rejected approval after the canary, a failure without automatic rollback, a success regretted
// later). It skips, naming them, the sites a later rollout moved on and those already reverted.
// Like every revert it goes through revertSites: one push, found by its trailers when an
// attempt's answer was lost, never lost across crashes, and the reason on every commit.
func Rollback(ctx workflow.Context, in RollbackInput) (RollbackResult, error) {
	res := RollbackResult{Reverts: map[string]string{}}
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (RollbackResult, error) { return res, nil }); err != nil {
		return res, err
	}
	var ex *activities.Executions
	var st rollout.Status
	err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		Summary:             "read the status of " + in.Rollout,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 10, MaximumInterval: 30 * time.Second},
	}), ex.Ended, activities.EndedInput{WorkflowID: in.Rollout, Query: QueryStatus}).Get(ctx, &st)
	if err != nil {
		return res, temporal.NewNonRetryableApplicationError("roll back "+in.Rollout+": "+errorMessage(err), ErrTypeRolloutFailed, err)
	}
	var git *activities.Git
	var loaded activities.LoadPlanResult
	if err := workflow.ExecuteActivity(gitOptions(ctx, "load "+rollout.PlanFile+" at "+rollout.Short(st.Commit), gitRetries),
		git.LoadPlan, activities.LoadPlanInput{Commit: st.Commit}).Get(ctx, &loaded); err != nil {
		return res, temporal.NewNonRetryableApplicationError("roll back "+in.Rollout+": "+errorMessage(err), ErrTypeRolloutFailed, err)
	}
	site := rollout.SitesByName(loaded.Plan.Sites)
	reason := fmt.Sprintf("rolled back by %s after the rollout ended (%s)", in.By, st.State)
	if in.Reason != "" {
		reason += ": " + in.Reason
	}
	// Every site the rollout promoted, latest wave first, as a rollback of a running rollout.
	sets := rollout.RevertOrder(st.Waves, len(st.Waves)-1, rollout.ScopeAll)
	for _, set := range sets {
		targets := make([]activities.Target, 0, len(set.Sites))
		ws := st.Waves[waveOf(st, set.Wave)]
		index := ws.SiteIndex()
		for _, name := range set.Sites {
			targets = append(targets, activities.Target{Site: name, Branch: ws.Sites[index[name]].Branch})
		}
		var owners activities.OwnersResult
		if err := workflow.ExecuteActivity(gitOptions(ctx, "who last moved the branches of wave "+set.Wave, gitRetries),
			git.Owners, activities.OwnersInput{Targets: targets}).Get(ctx, &owners); err != nil {
			return res, temporal.NewNonRetryableApplicationError("roll back "+in.Rollout+": "+errorMessage(err), ErrTypeRolloutFailed, err)
		}
		var ours []activities.Target
		for i, o := range owners.Owners {
			switch {
			case o.Rollout == in.Rollout && o.Revert:
				res.Skipped = append(res.Skipped, o.Site+": already reverted")
			case o.Rollout == in.Rollout:
				ours = append(ours, targets[i])
			case o.Rollout != "":
				res.Skipped = append(res.Skipped, fmt.Sprintf("%s: rollout %s moved it on since", o.Site, o.Rollout))
			default:
				res.Skipped = append(res.Skipped, o.Site+": no commit of fleetwave on its branch")
			}
		}
		if len(ours) == 0 {
			continue
		}
		workflow.SetCurrentDetails(ctx, fmt.Sprintf("Reverting %s in wave %s of %s", rollout.SitesLabel(siteNames(ours)), set.Wave, in.Rollout))
		reverted, err := revertSites(ctx, in.Rollout, reason, ours, site, loaded.Plan.Health.ConvergenceTimeout)
		if err != nil {
			res.Problems = append(res.Problems, fmt.Sprintf("wave %s: %s", set.Wave, errorMessage(err)))
			continue
		}
		for _, v := range reverted {
			switch {
			case v.Problem != "":
				res.Problems = append(res.Problems, v.Site+": "+v.Problem)
			case v.Revert == "":
				res.Skipped = append(res.Skipped, v.Site+": nothing of the rollout to revert")
			case !v.Converged:
				res.Reverted = append(res.Reverted, v.Site)
				res.Reverts[v.Site] = v.Revert
				res.Problems = append(res.Problems, fmt.Sprintf("%s: revert %s written, not seen applied: %s", v.Site, rollout.Short(v.Revert), cmp.Or(v.Message, v.State.Message)))
			default:
				res.Reverted = append(res.Reverted, v.Site)
				res.Reverts[v.Site] = v.Revert
			}
		}
	}
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("Rolled back %s: %s reverted, %s skipped, %s",
		in.Rollout, rollout.Count(len(res.Reverted), "site"), rollout.Count(len(res.Skipped), "site"), rollout.Count(len(res.Problems), "problem")))
	if workflow.GetVersion(ctx, versionRollbackEvidence, workflow.DefaultVersion, 1) >= 1 {
		writeRollbackEvidence(ctx, activities.RollbackEvidenceInput{
			Rollout: in.Rollout, Ended: st.State, Workflow: workflow.GetInfo(ctx).WorkflowExecution.ID, Fleet: st.Fleet, Commit: st.Commit,
			By: in.By, Reason: in.Reason, StartedAt: workflow.GetInfo(ctx).WorkflowStartTime, FinishedAt: workflow.Now(ctx),
			Reverts: res.Reverts, Skipped: res.Skipped, Problems: res.Problems,
		})
	}
	if len(res.Problems) > 0 {
		return res, temporal.NewNonRetryableApplicationError(fmt.Sprintf("roll back %s: %s", in.Rollout, res.Problems[0]), ErrTypeRolloutFailed, nil, res)
	}
	return res, nil
}

// versionRollbackEvidence guards the evidence a rollback commits at its end (rollbacks
// recorded before wrote none).
const versionRollbackEvidence = "rollback-evidence"

// writeRollbackEvidence commits what the rollback did to the evidence branch of the workers that
// keep one. A failure is logged: the rollback's result and history say the same.
func writeRollbackEvidence(ctx workflow.Context, in activities.RollbackEvidenceInput) {
	ctx, _ = workflow.NewDisconnectedContext(ctx)
	var ev *activities.Evidence
	var res activities.EvidenceResult
	err := workflow.ExecuteActivity(evidenceOptions(ctx, "write the evidence of "+in.Workflow), ev.WriteRollbackEvidence, in).Get(ctx, &res)
	if err != nil {
		workflow.GetLogger(ctx).Warn("cannot write the rollback's evidence", "rollback", in.Workflow, "error", err)
		return
	}
	if res.Commit != "" {
		workflow.GetLogger(ctx).Info("evidence written", "rollback", in.Workflow, "branch", res.Branch, "revision", res.Commit)
	}
}

// waveOf is the index of the named wave in the status, -1 when it has none.
func waveOf(st rollout.Status, name string) int {
	for i, w := range st.Waves {
		if w.Name == name {
			return i
		}
	}
	return -1
}

func siteNames(targets []activities.Target) []string {
	out := make([]string, len(targets))
	for i, t := range targets {
		out[i] = t.Site
	}
	return out
}
