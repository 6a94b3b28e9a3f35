package workflows

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/fleetwave/fleetwave/activities"
	"github.com/fleetwave/fleetwave/rollout"
	"github.com/fleetwave/fleetwave/rollout/runbook"
)

// RolloutInput names the fleet and the source commit (full hash) to roll out.
type RolloutInput struct {
	Fleet  string
	Commit string
	// Coordinator is the fleet workflow that started this rollout and waits for its end;
	// "" for a rollout started on its own.
	Coordinator string `json:",omitempty"`
	// Trigger says what submitted the commit, for the report (nil when not recorded).
	Trigger *rollout.Trigger `json:",omitempty"`
}

// RolloutResult is the final status of a rollout that succeeded. A failed rollout returns an
// ErrTypeRolloutFailed application error whose details carry the final status.
type RolloutResult struct {
	Status rollout.Status
}

// rolloutDriver runs a rollout's commands (runbook.Next) and feeds back what happened.
type rolloutDriver struct {
	run runbook.Rollout
	// step is the step in progress: the last one Next returned.
	step runbook.Step
	// loaded is what LoadPlan returned: the Rego policies the policy steps need.
	loaded activities.LoadPlanResult
	// site returns a site's plan settings, once the plan is loaded.
	site func(name string) rollout.Site
	// child is the running wave, to forward controls to; nil between waves.
	child workflow.ChildWorkflowFuture
	// details is the current details last set.
	details string
	// slack posts the rollout's Slack thread.
	slack notifier
	// watches are the running watches over the waves that succeeded.
	watches []workflow.ChildWorkflowFuture
	// catchUp is the input of a catch-up (catchup.go); nil for a rollout.
	catchUp *CatchUpInput
	// superseded are the catch-ups this rollout superseded at its alone gates (IDs).
	superseded []string
}

// Rollout moves one source commit through every wave of the plan found at that commit, by the
// runbook of runbook.Next: the gates before each wave, the wave as a child workflow, and, when
// one fails, a revert through git by the plan's rollback scope. The workflow only runs the
// commands Next returns and feeds back what happened.
func Rollout(ctx workflow.Context, in RolloutInput) (RolloutResult, error) {
	res, err := runRollout(ctx, in)
	// Even if this rollout was cancelled: tell the fleet, then write the evidence.
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	if in.Coordinator != "" {
		// Tell the fleet it may start the next rollout.
		id := workflow.GetInfo(ctx).WorkflowExecution.ID
		done := DoneSignal{Rollout: id, Succeeded: err == nil && res.Status.State == rollout.StateSucceeded}
		if serr := workflow.SignalExternalWorkflow(dctx, in.Coordinator, "", signalDone, done).Get(dctx, nil); serr != nil {
			workflow.GetLogger(ctx).Warn("cannot tell the fleet workflow this rollout ended", "rollout", id, "error", serr)
		}
	}
	if res.Status.State.Done() && workflow.GetVersion(dctx, versionEvidence, workflow.DefaultVersion, 1) >= 1 {
		writeEvidence(dctx, res.Status)
	}
	return res, err
}

// versionEvidence guards the evidence activity at the end of a rollout (a change after
// histories were recorded; see docs/workflows.md).
const versionEvidence = "rollout-evidence"

// writeEvidence runs the activity that commits the rollout's report to the evidence branch of
// the workers that keep one (serve --evidence-branch; the others do nothing). A failure is
// logged, not the rollout's: its report can be made from its history at any time.
func writeEvidence(ctx workflow.Context, st rollout.Status) {
	var ev *activities.Evidence
	var res activities.EvidenceResult
	err := workflow.ExecuteActivity(evidenceOptions(ctx, "write the evidence of "+st.Rollout),
		ev.WriteEvidence, activities.EvidenceInput{Status: st}).Get(ctx, &res)
	if err != nil {
		workflow.GetLogger(ctx).Warn("cannot write the rollout's evidence; `fleetwave report` makes it from the history", "rollout", st.Rollout, "error", err)
		return
	}
	if res.Commit != "" {
		workflow.GetLogger(ctx).Info("evidence written", "rollout", st.Rollout, "branch", res.Branch, "revision", res.Commit)
	}
}

// evidenceOptions are the options of the activities that commit evidence.
func evidenceOptions(ctx workflow.Context, summary string) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Minute,
		HeartbeatTimeout:    20 * time.Second,
		Summary:             summary,
		RetryPolicy:         &temporal.RetryPolicy{MaximumInterval: 30 * time.Second, MaximumAttempts: 6},
	})
}

func runRollout(ctx workflow.Context, in RolloutInput) (RolloutResult, error) {
	d := &rolloutDriver{run: runbook.NewRollout(workflow.GetInfo(ctx).WorkflowExecution.ID, in.Fleet, in.Commit)}
	// Before versionRolloutWatch, nothing observed a wave's sites once the wave ended.
	d.run.Watching = workflow.GetVersion(ctx, versionRolloutWatch, workflow.DefaultVersion, 1) >= 1
	// Before versionRolloutAlone, a rollout promoted whether or not another of its fleet did
	// (the coordinator alone kept them apart).
	d.run.Alone = workflow.GetVersion(ctx, versionRolloutAlone, workflow.DefaultVersion, 1) >= 1
	if err := d.handle(ctx); err != nil {
		return RolloutResult{}, err
	}
	return d.drive(ctx)
}

// drive runs the runbook from its start to its end.
func (d *rolloutDriver) drive(ctx workflow.Context) (RolloutResult, error) {
	defer func() {
		if ctx.Err() != nil {
			// Cancelled in Temporal: close open approval requests and tell the thread.
			d.next(ctx, runbook.Cancelled{At: workflow.Now(ctx)})
			d.slack.finish(ctx, rollout.EventCancelled)
		}
	}()
	d.next(ctx, runbook.Started{At: workflow.Now(ctx)})
	for {
		ev, err := d.runStep(ctx)
		if err != nil {
			return RolloutResult{}, err
		}
		if ev == nil {
			res, err := d.finish(ctx, d.step.(runbook.FinishRollout))
			d.startCatchUps(ctx)
			return res, err
		}
		d.next(ctx, ev)
	}
}

// handle sets the query, update and signal handlers: each feeds its event to Next at once.
func (d *rolloutDriver) handle(ctx workflow.Context) error {
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (rollout.RolloutStatus, error) {
		return d.run.Status.Object(), nil
	}); err != nil {
		return err
	}
	for _, action := range []runbook.ControlAction{runbook.ControlPause, runbook.ControlResume, runbook.ControlAbort, runbook.ControlRollback} {
		err := workflow.SetUpdateHandlerWithOptions(ctx, string(action),
			func(ctx workflow.Context, in ControlInput) (ControlResult, error) {
				d.next(ctx, runbook.Controlled{Control: rollout.Control{Action: string(action), By: in.By, Reason: in.Reason, At: workflow.Now(ctx)}})
				workflow.GetLogger(ctx).Info("rollout control", "rollout", d.run.Status.Rollout, "action", action, "by", in.By)
				return ControlResult{State: d.run.Status.State, Message: runbook.ControlMessage(action)}, nil
			},
			workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, in ControlInput) error { return d.run.CheckControl(action) }})
		if err != nil {
			return err
		}
	}
	for _, action := range []string{UpdateApprove, UpdateReject} {
		err := workflow.SetUpdateHandlerWithOptions(ctx, action,
			func(ctx workflow.Context, in VoteInput) (VoteResult, error) {
				return d.vote(ctx, action, in), nil
			},
			workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, in VoteInput) error {
				return d.run.CheckVote(in.Wave, in.By, in.Via, workflow.Now(ctx))
			}})
		if err != nil {
			return err
		}
	}
	// The running wave reports its changes: the status query shows the wave live.
	progress := workflow.GetSignalChannel(ctx, signalWaveProgress)
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			var c rollout.WaveChange
			progress.Receive(ctx, &c)
			d.next(ctx, runbook.WaveProgressed{Change: c})
		}
	})
	supersede := workflow.GetSignalChannel(ctx, signalSupersede)
	workflow.Go(ctx, func(ctx workflow.Context) {
		var s CommitSignal
		supersede.Receive(ctx, &s)
		d.next(ctx, runbook.Controlled{Control: rollout.Control{Action: string(runbook.ControlSupersede), By: "fleet",
			Reason: "superseded by " + rollout.Short(s.Commit), At: workflow.Now(ctx)}})
	})
	return nil
}

// next feeds an event to the runbook and runs the effects it returns; the step it returns, if
// any, is the one runStep runs next.
func (d *rolloutDriver) next(ctx workflow.Context, e runbook.Event) {
	var step runbook.Step
	var effects []runbook.Effect
	d.run, step, effects = d.run.Next(e)
	if step != nil {
		d.step = step
	}
	for _, c := range effects {
		switch c := c.(type) {
		case runbook.SetState:
			d.setState(ctx, c)
		case runbook.StartThread:
			d.slack.start(ctx, d.run.Status.Rollout, c.Channel, func() rollout.Status { return d.run.Status.Digest() })
			if d.catchUp != nil && d.catchUp.Thread != "" {
				// A catch-up posts in the thread of the rollout that deferred its site.
				d.slack.channel, d.slack.thread = d.catchUp.Channel, d.catchUp.Thread
			}
		case runbook.PostEvent:
			d.slack.note(c.Event.Kind, c.Event.Wave)
		case runbook.ForwardControl:
			if d.child != nil {
				// A wave that already ended ignores it; the runbook checks the same flags.
				_ = d.child.SignalChildWorkflow(ctx, signalControl, ControlSignal{Action: c.Action}).Get(ctx, nil)
			}
		case runbook.WatchSites:
			d.watch(ctx, c.Index)
		case runbook.StopWatches:
			for _, w := range d.watches {
				// A watch that already ended ignores it.
				_ = w.SignalChildWorkflow(ctx, signalStopWatch, nil).Get(ctx, nil)
			}
			d.watches = nil
		}
	}
	if details := d.run.Details(); details != d.details {
		d.details = details
		workflow.SetCurrentDetails(ctx, d.details)
	}
}

// runStep runs the step in progress and returns its event; nil for FinishRollout. The error is
// the workflow's cancellation, where a step cannot go on without it.
func (d *rolloutDriver) runStep(ctx workflow.Context) (runbook.Event, error) {
	switch c := d.step.(type) {
	case runbook.LoadPlan:
		var git *activities.Git
		err := workflow.ExecuteActivity(gitOptions(ctx, "load "+rollout.PlanFile+" at "+rollout.Short(d.run.Status.Commit), gitRetries),
			git.LoadPlan, activities.LoadPlanInput{Commit: d.run.Status.Commit}).Get(ctx, &d.loaded)
		if err != nil {
			return runbook.StepFailed{At: workflow.Now(ctx), Message: errorMessage(err)}, nil
		}
		d.site = rollout.SitesByName(d.loaded.Plan.Sites)
		return runbook.PlanLoaded{At: workflow.Now(ctx), Plan: d.loaded.Plan, Commit: d.loaded.Commit, Subject: d.loaded.Subject,
			Author: d.loaded.Author, Message: d.loaded.Message, Policies: len(d.loaded.Policies) > 0, Simulated: d.loaded.Simulated}, nil
	case runbook.EvaluatePolicies:
		req := activities.PolicyRequest{Builtins: d.run.Plan.Policies, MinSoak: c.MinSoak, Files: d.loaded.Policies, Input: c.Input}
		if d.catchUp != nil {
			req.Clock = d.catchUp.Started
		}
		var dec rollout.PolicyDecision
		if err := workflow.ExecuteLocalActivity(policyOptions(ctx), activities.EvaluatePolicy, req).Get(ctx, &dec); err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return runbook.StepFailed{At: workflow.Now(ctx), Message: errorMessage(err)}, nil
		}
		return runbook.PolicyDecided{At: workflow.Now(ctx), Decision: dec}, nil
	case runbook.WaitUntil:
		return d.wait(ctx, c, c.At.Sub(workflow.Now(ctx)))
	case runbook.AwaitVotes:
		if !c.Remind.IsZero() && c.Remind.After(workflow.Now(ctx)) && workflow.GetVersion(ctx, versionApprovalReminder, workflow.DefaultVersion, 1) >= 1 {
			d.remind(ctx, c)
		}
		return d.wait(ctx, c, c.Timeout)
	case runbook.HoldPaused:
		if err := workflow.Await(ctx, func() bool { return d.run.Interrupted(c) }); err != nil {
			return nil, err
		}
		return runbook.Woke{At: workflow.Now(ctx)}, nil
	case runbook.ResolveApprovers:
		var res activities.ResolveResult
		var slack *activities.Slack
		err := workflow.ExecuteActivity(slackOptions(ctx, "resolve approvers @"+strings.Join(c.Groups, ", @")),
			slack.ResolveGroups, activities.ResolveInput{Groups: c.Groups}).Get(ctx, &res)
		switch {
		case err != nil && ctx.Err() != nil:
			return nil, ctx.Err()
		case err != nil:
			return runbook.ApproversResolved{At: workflow.Now(ctx), Err: errorMessage(err)}, nil
		}
		return runbook.ApproversResolved{At: workflow.Now(ctx), Members: res.Members, Unresolved: res.Unresolved, IDs: res.IDs}, nil
	case runbook.CheckAlone:
		return d.checkAlone(ctx)
	case runbook.RunWave:
		return d.runWave(ctx, c.Index), nil
	case runbook.RevertWave:
		return d.revert(ctx, c.Set, c.Reason), nil
	case runbook.RevertLate:
		// The wave's promotion in flight when it ended may land after the first revert; wait
		// until its activity can no longer be running, then revert what landed.
		ctx, _ = workflow.NewDisconnectedContext(ctx)
		if err := workflow.NewTimerWithOptions(ctx, gitTimeout, workflow.TimerOptions{Summary: "let a promotion in flight land"}).Get(ctx, nil); err != nil {
			return runbook.Reverted{At: workflow.Now(ctx)}, nil
		}
		return d.revert(ctx, c.Set, c.Reason), nil
	case runbook.FinishRollout:
		return nil, nil
	}
	panic(fmt.Sprintf("rollout %s: no step to run (%T)", d.run.Status.Rollout, d.step))
}

// versionRolloutAlone guards the gate before each wave that waits until no earlier rollout of
// the fleet still runs (runbook.GateAlone).
const versionRolloutAlone = "rollout-alone"

// endedStates are the states of a rollout that finished its runbook: one still running in one
// of them is writing its evidence, and promotes nothing more.
var endedStates = []string{string(rollout.StateSucceeded), string(rollout.StateFailed), string(rollout.StateAborted),
	string(rollout.StateRolledBack), string(rollout.StateSuperseded)}

// checkAlone asks Temporal's visibility store whether a rollout of the fleet that started
// before this one still runs; an error is an answer too (nobody can tell: the wave waits).
func (d *rolloutDriver) checkAlone(ctx workflow.Context) (runbook.Event, error) {
	var ex *activities.Executions
	var res activities.EarlierResult
	info := workflow.GetInfo(ctx)
	in := activities.EarlierInput{Fleet: d.run.Status.Fleet, Attribute: AttrFleet.GetName(),
		Self: info.WorkflowExecution.ID, Started: info.WorkflowStartTime, StateAttr: AttrState.GetName(), Ended: endedStates}
	summary := "is an earlier rollout of fleet " + d.run.Status.Fleet + " still running?"
	if d.catchUp != nil {
		// A catch-up gives way to every rollout of its fleet, whenever it started.
		in.Any, summary = true, "is a rollout of fleet "+d.run.Status.Fleet+" running?"
	} else {
		// A rollout supersedes the fleet's catch-ups (each once), and waits for them to end.
		in.CatchUps, in.Signal, in.Commit, in.Signalled = CatchUpType, signalSupersede, d.run.Status.Commit, d.superseded
	}
	err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		Summary:             summary,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 3},
	}), ex.Earlier, in).Get(ctx, &res)
	for _, id := range res.CatchUps {
		// Signalled to end: started again if this rollout does not succeed (startCatchUps).
		if !slices.Contains(d.superseded, id) {
			d.superseded = append(d.superseded, id)
		}
	}
	switch {
	case err != nil && ctx.Err() != nil:
		return nil, ctx.Err()
	case err != nil:
		return runbook.AloneChecked{At: workflow.Now(ctx), Err: errorMessage(err)}, nil
	case len(res.Rollouts) > 0:
		return runbook.AloneChecked{At: workflow.Now(ctx), Other: res.Rollouts[0]}, nil
	case len(res.CatchUps) > 0:
		return runbook.AloneChecked{At: workflow.Now(ctx), Other: res.CatchUps[0], CatchUp: true}, nil
	}
	return runbook.AloneChecked{At: workflow.Now(ctx)}, nil
}

// revert reverts the set's sites (revertSites: a cancellation of the rollout cannot stop it
// half way) and says what it did.
func (d *rolloutDriver) revert(ctx workflow.Context, set rollout.RevertSet, reason string) runbook.Event {
	reverted, err := revertSites(ctx, d.run.Status.Rollout, reason, d.targets(set), d.site, d.run.Plan.Health.ConvergenceTimeout)
	if err != nil {
		return runbook.Reverted{At: workflow.Now(ctx), Err: errorMessage(err)}
	}
	return runbook.Reverted{At: workflow.Now(ctx), Sites: reverted}
}

// wait sleeps on a durable timer for d, or until the runbook says the wait is over (a stop, a
// resume, a decided approval).
func (d *rolloutDriver) wait(ctx workflow.Context, c runbook.Step, dur time.Duration) (runbook.Event, error) {
	tctx, cancel := workflow.WithCancel(ctx)
	timer := workflow.NewTimer(tctx, dur)
	err := workflow.Await(ctx, func() bool { return timer.IsReady() || d.run.Interrupted(c) })
	cancel()
	if err != nil {
		return nil, err
	}
	return runbook.Woke{At: workflow.Now(ctx)}, nil
}

// versionApprovalReminder guards the reminder timer of an approval request (remindBefore).
const versionApprovalReminder = "approval-reminder"

// remind posts the reminder to the Slack thread at c.Remind, unless the wait is over by then.
func (d *rolloutDriver) remind(ctx workflow.Context, c runbook.AwaitVotes) {
	tctx, cancel := workflow.WithCancel(ctx)
	timer := workflow.NewTimerWithOptions(tctx, c.Remind.Sub(workflow.Now(ctx)),
		workflow.TimerOptions{Summary: "remind the approvers of wave " + c.Reminder.Wave})
	workflow.Go(ctx, func(ctx workflow.Context) {
		_ = workflow.Await(ctx, func() bool { return timer.IsReady() || d.run.Interrupted(c) })
		if timer.IsReady() && !d.run.Interrupted(c) {
			d.slack.note(c.Reminder.Kind, c.Reminder.Wave)
			return
		}
		cancel()
	})
}

// targets are the set's sites with their branches.
func (d *rolloutDriver) targets(set rollout.RevertSet) []activities.Target {
	ws := d.run.Status.Waves[waveOf(d.run.Status, set.Wave)]
	index := ws.SiteIndex()
	out := make([]activities.Target, len(set.Sites))
	for i, name := range set.Sites {
		out[i] = activities.Target{Site: name, Branch: ws.Sites[index[name]].Branch}
	}
	return out
}

// runWave runs wave i as a child workflow and returns how it ended.
func (d *rolloutDriver) runWave(ctx workflow.Context, i int) runbook.Event {
	plan, st := d.run.Plan, d.run.Status
	wave := plan.Waves[i]
	in := WaveInput{Rollout: st.Rollout, Commit: st.Commit, Wave: wave, Health: plan.Health, Status: st.Waves[i],
		Automatic: plan.Rollback.Automatic}
	in.Sites = plan.SitesOf(wave.Sites)
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID:    WaveID(st.Rollout, wave.Name),
		StaticSummary: fmt.Sprintf("wave %s: %s to %s", wave.Name, rollout.SitesLabel(wave.Sites), rollout.Short(st.Commit)),
		TypedSearchAttributes: temporal.NewSearchAttributes(
			AttrFleet.ValueSet(st.Fleet), AttrCommit.ValueSet(st.Commit), AttrWave.ValueSet(wave.Name)),
	})
	var res WaveResult
	started := workflow.Now(ctx)
	d.child = workflow.ExecuteChildWorkflow(cctx, Wave, in)
	err := d.child.Get(ctx, &res)
	d.child = nil
	now := workflow.Now(ctx)
	ended := waveEnded(now, err, res)
	result := "Lost"
	if ended.Status != nil {
		result = string(ended.Status.State)
	}
	recordWave(ctx, wave.Name, result, now.Sub(started))
	return ended
}

// watch starts the watch over wave i, which succeeded, as a child workflow; when it sees a
// site degrade, the runbook hears of it (WatchDegraded). The watches end when the runbook
// stops them (StopWatches), or are cancelled with the rollout.
func (d *rolloutDriver) watch(ctx workflow.Context, i int) {
	plan, st := d.run.Plan, d.run.Status
	ws := st.Waves[i]
	in := WatchInput{Rollout: st.Rollout, Commit: st.Commit, Wave: ws.Name, Sites: plan.SitesOf(plan.Waves[i].Sites), Health: plan.Health, Status: ws.Carry()}
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID:        WatchID(st.Rollout, ws.Name),
		StaticSummary:     fmt.Sprintf("watch of wave %s: %s on %s until the rollout ends", ws.Name, rollout.SitesLabel(plan.Waves[i].Sites), rollout.Short(st.Commit)),
		ParentClosePolicy: enumspb.PARENT_CLOSE_POLICY_REQUEST_CANCEL,
		TypedSearchAttributes: temporal.NewSearchAttributes(
			AttrFleet.ValueSet(st.Fleet), AttrCommit.ValueSet(st.Commit), AttrWave.ValueSet(ws.Name)),
	})
	f := workflow.ExecuteChildWorkflow(cctx, Watch, in)
	d.watches = append(d.watches, f)
	workflow.Go(ctx, func(ctx workflow.Context) {
		var res WatchResult
		if err := f.Get(ctx, &res); err != nil || res.Site == "" {
			return // stopped (the rollout is reverting or ended), or nothing left to watch
		}
		workflow.GetLogger(ctx).Warn("watched site degraded", "rollout", st.Rollout, "wave", res.Wave, "site", res.Site)
		d.next(ctx, runbook.WatchDegraded{At: workflow.Now(ctx), Wave: res.Wave, Site: res.Site, Message: res.Message})
	})
}

// waveEnded is how the wave's child workflow ended, as an event.
func waveEnded(now time.Time, err error, res WaveResult) runbook.WaveEnded {
	if err == nil {
		return runbook.WaveEnded{At: now, Status: &res.Status}
	}
	var app *temporal.ApplicationError
	if errors.As(err, &app) && app.Type() == ErrTypeWaveFailed {
		var ws rollout.WaveStatus
		if app.Details(&ws) == nil {
			return runbook.WaveEnded{At: now, Status: &ws, Failed: app.Message()}
		}
		return runbook.WaveEnded{At: now, Failed: app.Message()}
	}
	// Terminated, timed out, reset: no verdict.
	return runbook.WaveEnded{At: now, Lost: errorMessage(err)}
}

// vote feeds an accepted vote to the runbook and says where the request stands.
func (d *rolloutDriver) vote(ctx workflow.Context, action string, in VoteInput) VoteResult {
	i, err := d.run.VoteWave(in.Wave)
	if err != nil {
		// The validator ran in the same workflow task; this only guards replays of old code.
		return VoteResult{Wave: in.Wave, Message: err.Error()}
	}
	v := rollout.Vote{By: in.By, Approve: action == UpdateApprove, Via: in.Via, Comment: in.Comment, At: workflow.Now(ctx)}
	d.next(ctx, runbook.VoteCast{Wave: in.Wave, Vote: v})
	ws := d.run.Status.Waves[i]
	workflow.GetLogger(ctx).Info("approval vote", "rollout", d.run.Status.Rollout, "wave", ws.Name, "action", action, "by", in.By, "via", in.Via)
	return VoteResult{Wave: ws.Name, Outcome: ws.Approval.Outcome, Message: fmt.Sprintf("wave %s %s; %s", ws.Name, v, ws.Approval.Summary())}
}

func (d *rolloutDriver) setState(ctx workflow.Context, c runbook.SetState) {
	updates := []temporal.SearchAttributeUpdate{AttrState.ValueSet(string(c.State)), AttrFleet.ValueSet(d.run.Status.Fleet), AttrCommit.ValueSet(d.run.Status.Commit)}
	if c.Wave != "" {
		updates = append(updates, AttrWave.ValueSet(c.Wave))
	}
	if err := workflow.UpsertTypedSearchAttributes(ctx, updates...); err != nil {
		workflow.GetLogger(ctx).Warn("cannot update search attributes", "rollout", d.run.Status.Rollout, "error", err)
	}
}

// finish ends the workflow as the runbook says, once accepted updates finished and the Slack
// thread reported the end.
func (d *rolloutDriver) finish(ctx workflow.Context, c runbook.FinishRollout) (RolloutResult, error) {
	d.slack.finish(ctx, rollout.EventFinished)
	_ = workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) })
	countFinished(ctx, c.State)
	st := d.run.Status.Compact()
	switch c.State {
	case rollout.StateSucceeded, rollout.StateSuperseded:
		return RolloutResult{Status: st}, nil
	case rollout.StateFailed:
		return RolloutResult{Status: st}, temporal.NewNonRetryableApplicationError(c.Reason, ErrTypeRolloutFailed, nil, st)
	}
	return RolloutResult{Status: st}, temporal.NewNonRetryableApplicationError(c.Reason, ErrTypeRolloutAborted, nil, st)
}
