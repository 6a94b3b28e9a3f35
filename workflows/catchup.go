package workflows

import (
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/fleetwave/fleetwave/activities"
	"github.com/fleetwave/fleetwave/rollout"
	"github.com/fleetwave/fleetwave/rollout/runbook"
)

// A catch-up brings one site Deferred by a rollout that succeeded (offline, health.offline
// with action defer) to that rollout's commit once the site is back:
//
//   - the rollout starts one per Deferred site as it ends, CatchUp workflows with the IDs
//     CatchUpID, abandoned, so they outlive it;
//   - a catch-up probes its site every health.offline.probe until it answers, on durable
//     timers (continuing as new when its history grows), then runs the rollout's runbook cut
//     to that site (runbook.Rollout.CatchUp): the policies of the site's wave, evaluated for
//     the site then (a freeze holds it until the window opens), the promotion, convergence,
//     the bake and the checks, and a revert when it degrades;
//   - it posts in the rollout's Slack thread, and writes its own evidence;
//   - one writer per site branch: a catch-up promotes only while no rollout of the fleet runs
//     (GateAlone, whenever that rollout started), and a rollout, at its own GateAlone,
//     supersedes every catch-up of its fleet and waits for them to end. A site of the newer
//     rollout is then that rollout's to promote, or to defer again.

// CatchUpType is the workflow type of a catch-up, for visibility queries.
const CatchUpType = "CatchUp"

// CatchUpID is the workflow ID of the catch-up of a site of a fleet.
func CatchUpID(fleet, site string) string { return "catchup/" + fleet + "/" + site }

// versionCatchUp guards a rollout that succeeded with Deferred sites starting their catch-ups.
const versionCatchUp = "rollout-catchup"

// memoCatchUp is the memo key of a catch-up: a CatchUpMemo, which the visibility store lists
// with it (fleetwave sites, serve's /metrics) without asking the workflow.
const memoCatchUp = "catchUp"

// CatchUpMemo is a catch-up's memo: its site, and since when the site is unreachable while the
// catch-up probes it (zero once it answered).
type CatchUpMemo struct {
	Site         string
	OfflineSince time.Time `json:",omitzero"`
}

// CatchUpInput names the site to catch up, the commit (of the rollout that deferred it, which
// succeeded: the fleet's last succeeded commit when it started) and where to report.
type CatchUpInput struct {
	Fleet  string
	Commit string
	Site   string
	// Rollout is the rollout that deferred the site.
	Rollout string
	// Since is when the site was last observed, as that rollout saw it; Started is when that
	// rollout started (a rehearsal judges the catch-up's policies on that rollout's clock).
	Since   time.Time `json:",omitzero"`
	Started time.Time `json:",omitzero"`
	// Channel and Thread are the rollout's Slack thread, where the catch-up posts; empty when
	// the rollout had none.
	Channel string `json:",omitempty"`
	Thread  string `json:",omitempty"`
}

// CatchUp probes a Deferred site until it answers, then promotes it to the commit through the
// gates of its wave (see above). Its result is the catch-up's final status, as a rollout's.
func CatchUp(ctx workflow.Context, in CatchUpInput) (RolloutResult, error) {
	id := workflow.GetInfo(ctx).WorkflowExecution.ID
	d := &rolloutDriver{run: runbook.NewRollout(id, in.Fleet, in.Commit), catchUp: &in}
	d.run.Watching, d.run.Alone, d.run.CatchUp = true, true, in.Site
	since := in.Since
	if since.IsZero() {
		since = workflow.Now(ctx)
	}
	d.run.Status.State = rollout.StateWaiting
	d.run.Status.CatchUp = &rollout.CatchUpOf{Site: in.Site, Rollout: in.Rollout, Probing: true, OfflineSince: since}
	if err := d.handle(ctx); err != nil {
		return RolloutResult{}, err
	}
	d.setState(ctx, runbook.SetState{State: rollout.StateWaiting})
	d.memo(ctx, CatchUpMemo{Site: in.Site, OfflineSince: since})
	if again, err := d.awaitSite(ctx); err != nil || again {
		if err == nil {
			_ = workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) })
			err = workflow.NewContinueAsNewError(ctx, CatchUp, in)
		}
		return RolloutResult{}, err
	}
	d.run.Status.Reason = ""
	d.run.Status.CatchUp = &rollout.CatchUpOf{Site: in.Site, Rollout: in.Rollout, OfflineSince: since}
	d.memo(ctx, CatchUpMemo{Site: in.Site})
	res, err := d.drive(ctx)
	if err == nil && res.Status.State == rollout.StateSucceeded && len(res.Status.DeferredSites()) > 0 {
		// Offline again before it applied the promotion: withdrawn, and probed again.
		in.Since = workflow.Now(ctx)
		return RolloutResult{}, workflow.NewContinueAsNewError(ctx, CatchUp, in)
	}
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	if res.Status.State.Done() {
		writeEvidence(dctx, res.Status)
	}
	return res, err
}

// memo sets the catch-up's memo; a failure only leaves the memo as it was.
func (d *rolloutDriver) memo(ctx workflow.Context, m CatchUpMemo) {
	if err := workflow.UpsertMemo(ctx, map[string]any{memoCatchUp: m}); err != nil {
		workflow.GetLogger(ctx).Warn("cannot set the catch-up's memo", "site", m.Site, "error", err)
	}
}

// catchUpHistory is how many events a catch-up's history may hold while it probes before it
// continues as new: a site may be offline for months.
var catchUpHistory = 2000

// awaitSite probes the site every health.offline.probe until it answers, or until the
// catch-up is stopped (superseded, aborted): then the runbook ends it at its first safe point.
// again is true when the history grew long: the workflow continues as new.
func (d *rolloutDriver) awaitSite(ctx workflow.Context) (again bool, err error) {
	in := d.catchUp
	var git *activities.Git
	var loaded activities.LoadPlanResult
	if err := workflow.ExecuteActivity(gitOptions(ctx, "load "+rollout.PlanFile+" at "+rollout.Short(in.Commit), gitRetries),
		git.LoadPlan, activities.LoadPlanInput{Commit: in.Commit}).Get(ctx, &loaded); err != nil {
		return false, nil // the runbook loads it again, and fails with the reason
	}
	site, ok := loaded.Plan.Site(in.Site)
	if !ok {
		return false, nil // the runbook says it is no longer in the plan
	}
	every := loaded.Plan.Health.Offline.Probe
	if every <= 0 {
		every = rollout.DefaultOfflineProbe
	}
	since := "unreachable"
	if !in.Since.IsZero() {
		since += " since " + in.Since.UTC().Format(time.RFC3339)
	}
	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 1},
	})
	for d.run.Stop == rollout.StopNone {
		var res activities.ProbeResult
		var sites *activities.Sites
		err := workflow.ExecuteLocalActivity(lctx, sites.Probe, activities.ProbeInput{Sites: []rollout.Site{site}}).Get(ctx, &res)
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		if err == nil && len(res.Unreachable) == 0 {
			return false, nil
		}
		why := ""
		if err != nil {
			why = errorMessage(err)
		} else {
			why = res.Unreachable[0].Message
		}
		d.run.Status.Reason = fmt.Sprintf("catch-up of %s to %s, deferred by %s: %s (%s); probing every %s",
			in.Site, rollout.Short(in.Commit), in.Rollout, since, why, every)
		workflow.SetCurrentDetails(ctx, d.run.Status.Reason)
		if _, err := workflow.AwaitWithTimeout(ctx, every, func() bool { return d.run.Stop != rollout.StopNone }); err != nil {
			return false, err
		}
		info := workflow.GetInfo(ctx)
		if info.GetCurrentHistoryLength() > catchUpHistory || info.GetContinueAsNewSuggested() {
			return d.run.Stop == rollout.StopNone, nil
		}
	}
	return false, nil
}

// startCatchUps starts the catch-ups of the rollout's Deferred sites, once it succeeded; a
// rollout that did not succeed starts again the catch-ups it superseded (their commit is
// still the fleet's last succeeded one).
func (d *rolloutDriver) startCatchUps(ctx workflow.Context) {
	st := d.run.Status
	succeeded := st.State == rollout.StateSucceeded
	if d.catchUp != nil || (succeeded && len(st.DeferredSites()) == 0) || (!succeeded && len(d.superseded) == 0) {
		return
	}
	if workflow.GetVersion(ctx, versionCatchUp, workflow.DefaultVersion, 1) < 1 {
		return
	}
	var ins []CatchUpInput
	var waves []string
	if succeeded {
		for _, w := range st.Waves {
			for _, s := range w.Sites {
				if s.Verdict == rollout.VerdictDeferred {
					ins = append(ins, CatchUpInput{Fleet: st.Fleet, Commit: st.Commit, Site: s.Name, Rollout: st.Rollout,
						Since: s.UnknownSince, Started: st.StartedAt, Channel: d.slack.channel, Thread: d.slack.thread})
					waves = append(waves, w.Name)
				}
			}
		}
	} else {
		ins = d.supersededInputs(ctx)
		waves = make([]string, len(ins))
	}
	futures := make([]workflow.ChildWorkflowFuture, len(ins))
	for i, in := range ins {
		attrs := []temporal.SearchAttributeUpdate{AttrFleet.ValueSet(in.Fleet), AttrCommit.ValueSet(in.Commit)}
		if waves[i] != "" {
			attrs = append(attrs, AttrWave.ValueSet(waves[i]))
		}
		cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
			WorkflowID:            CatchUpID(in.Fleet, in.Site),
			ParentClosePolicy:     enumspb.PARENT_CLOSE_POLICY_ABANDON,
			WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
			StaticSummary:         fmt.Sprintf("catch-up of %s to %s, deferred by %s", in.Site, rollout.Short(in.Commit), in.Rollout),
			TypedSearchAttributes: temporal.NewSearchAttributes(attrs...),
		})
		futures[i] = workflow.ExecuteChildWorkflow(cctx, CatchUp, in)
	}
	for _, f := range futures {
		// Started, or already running (a newer rollout's catch-up would have superseded it):
		// either way the site has its catch-up.
		if err := f.GetChildWorkflowExecution().Get(ctx, nil); err != nil {
			workflow.GetLogger(ctx).Warn("cannot start a catch-up", "rollout", st.Rollout, "error", err)
		}
	}
}

// supersededInputs reads the inputs of the catch-ups this rollout superseded whose last run
// ended superseded (none started since), to start them again.
func (d *rolloutDriver) supersededInputs(ctx workflow.Context) []CatchUpInput {
	var ex *activities.Executions
	var res activities.LastRunsResult
	err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		Summary:             "the catch-ups this rollout superseded, to start again",
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 10, MaximumInterval: 30 * time.Second},
	}), ex.LastRuns, activities.LastRunsInput{IDs: d.superseded, Superseded: string(rollout.StateSuperseded)}).Get(ctx, &res)
	if err != nil {
		workflow.GetLogger(ctx).Warn("cannot read the catch-ups this rollout superseded; they stay ended", "rollout", d.run.Status.Rollout, "error", err)
		return nil
	}
	var out []CatchUpInput
	for _, run := range res.Superseded {
		r := run.Input
		if r.Site == "" || r.Fleet != d.run.Status.Fleet {
			workflow.GetLogger(ctx).Warn("a superseded catch-up is of no site of this fleet", "workflow", run.ID, "fleet", r.Fleet)
			continue
		}
		out = append(out, CatchUpInput{Fleet: r.Fleet, Commit: r.Commit, Site: r.Site, Rollout: r.Rollout,
			Since: r.Since, Started: r.Started, Channel: r.Channel, Thread: r.Thread})
	}
	return out
}
