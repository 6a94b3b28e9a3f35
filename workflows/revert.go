package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/fleetwave/fleetwave/activities"
	"github.com/fleetwave/fleetwave/rollout"
	"github.com/fleetwave/fleetwave/rollout/runbook"
)

// versionRevertOnlyOurs guards waiting only for the sites that got a revert commit.
const versionRevertOnlyOurs = "revert-only-ours"

// revertSites is the one place where fleetwave reverts: it writes git revert commits of the
// rollout's promotions on the targets' branches (one push), then waits until the sites that
// got one applied it, within timeout. A wave reverts its sites degraded within the failure
// budget with it; a rollout reverts by its rollback scope with it. Git, read by trailers, says
// what to revert: a site whose branch holds no promotion of the rollout gets no revert
// (Reversion.Revert ""), and a revert written by an attempt whose answer was lost is found,
// not written twice. An error means nothing is known to be reverted.
func revertSites(ctx workflow.Context, rolloutID, reason string, targets []activities.Target, site func(string) rollout.Site,
	timeout time.Duration) ([]runbook.Reversion, error) {
	// A cancelled rollout still finishes its reverts.
	ctx, _ = workflow.NewDisconnectedContext(ctx)
	names := make([]string, len(targets))
	for i, t := range targets {
		names[i] = t.Site
	}
	reverted, err := writeReverts(ctx, rolloutID, reason, targets)
	if err != nil {
		return nil, err
	}
	// Before versionRevertOnlyOurs, every target was waited for, reverted or not.
	all := workflow.GetVersion(ctx, versionRevertOnlyOurs, workflow.DefaultVersion, 1) == workflow.DefaultVersion
	out := make([]runbook.Reversion, len(reverted.Changes))
	var expect []runbook.Expect
	var at []int
	for i, c := range reverted.Changes {
		out[i] = runbook.Reversion{Site: c.Site, Revert: c.RolloutCommit(), Problem: c.Problem}
		if out[i].Revert != "" || all {
			// Wait for the branch head: the revert, or a commit someone pushed after it.
			expect = append(expect, runbook.Expect{Site: c.Site, Commit: c.Commit})
			at = append(at, i)
		}
	}
	if len(expect) == 0 {
		return out, nil
	}
	conv, err := waitConverged(ctx, site, expect, workflow.Now(ctx).Add(timeout), timeout,
		fmt.Sprintf("wait for %s to apply the revert", rollout.SitesLabel(names)))
	for k, i := range at {
		switch {
		case err != nil:
			out[i].Message = "revert written, convergence unknown: " + errorMessage(err)
		default:
			out[i].Converged, out[i].State = conv.Sites[k].Converged, conv.Sites[k].State
		}
	}
	return out, nil
}

// writeReverts writes the revert commits of revertSites (one push) without waiting for the
// sites to apply them; a cancelled rollout still writes them.
func writeReverts(ctx workflow.Context, rolloutID, reason string, targets []activities.Target) (activities.ChangeResult, error) {
	ctx, _ = workflow.NewDisconnectedContext(ctx)
	names := make([]string, len(targets))
	for i, t := range targets {
		names[i] = t.Site
	}
	var reverted activities.ChangeResult
	var git *activities.Git
	err := workflow.ExecuteActivity(gitOptions(ctx, "revert "+rollout.SitesLabel(names), gitRetriesLong), git.Revert,
		activities.RevertInput{Rollout: rolloutID, Reason: reason, Targets: targets}).Get(ctx, &reverted)
	if err != nil {
		countReverts(ctx, "failed", len(targets))
		return reverted, err
	}
	written := 0
	for _, c := range reverted.Changes {
		if c.RolloutCommit() != "" {
			written++
		}
	}
	countReverts(ctx, "written", written)
	countReverts(ctx, "nothing", len(reverted.Changes)-written)
	return reverted, nil
}
