package workflows

import (
	"cmp"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/fleetwave/fleetwave/activities"
	"github.com/fleetwave/fleetwave/rollout"
)

// RolloutInput names the fleet and the source commit (full hash) to roll out.
type RolloutInput struct {
	Fleet  string
	Commit string
	// Coordinator is the fleet workflow that started this rollout and waits for its end;
	// "" for a rollout started on its own.
	Coordinator string `json:",omitempty"`
}

// RolloutResult is the final status of a rollout that succeeded. A failed rollout returns an
// ErrTypeRolloutFailed application error whose details carry the final status.
type RolloutResult struct {
	Status rollout.Status
}

type rolloutRun struct {
	status rollout.Status
	plan   *rollout.Plan
	// loaded is what LoadPlan returned: the commit's author and message, the Rego policies.
	loaded activities.LoadPlanResult
	// child is the running wave, to forward controls to; nil between waves.
	child workflow.ChildWorkflowFuture
	// site returns a site's plan settings, once the plan is loaded.
	site func(name string) rollout.Site
	// resumeState is the state to go back to when a paused rollout resumes.
	resumeState rollout.State
	// stop says why the rollout stops early, once an operator (or a newer commit) asked;
	// stopper is that control.
	stop    rollout.StopCause
	stopper rollout.Control

	// slack posts the rollout's Slack thread.
	slack notifier
}

// Rollout moves one source commit through every wave of the plan found at that commit. Each
// wave runs as a child workflow; when one fails, the sites named by rollback.scope are
// reverted through git in reverse wave order, the workflow waits for them to apply the revert,
// and it fails with the reason. Later waves are never touched.
func Rollout(ctx workflow.Context, in RolloutInput) (RolloutResult, error) {
	res, err := runRollout(ctx, in)
	if in.Coordinator != "" {
		// Tell the fleet it may start the next rollout, even if this one was cancelled.
		dctx, _ := workflow.NewDisconnectedContext(ctx)
		id := workflow.GetInfo(ctx).WorkflowExecution.ID
		if serr := workflow.SignalExternalWorkflow(dctx, in.Coordinator, "", signalDone, DoneSignal{Rollout: id}).Get(dctx, nil); serr != nil {
			workflow.GetLogger(ctx).Warn("cannot tell the fleet workflow this rollout ended", "rollout", id, "error", serr)
		}
	}
	return res, err
}

func runRollout(ctx workflow.Context, in RolloutInput) (RolloutResult, error) {
	r := &rolloutRun{status: rollout.Status{
		Rollout:   workflow.GetInfo(ctx).WorkflowExecution.ID,
		Fleet:     in.Fleet,
		Commit:    in.Commit,
		StartedAt: workflow.Now(ctx),
	}}
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (rollout.Status, error) {
		return r.status, nil
	}); err != nil {
		return RolloutResult{}, err
	}
	for _, action := range []string{UpdatePause, UpdateResume, UpdateAbort, UpdateRollback} {
		err := workflow.SetUpdateHandlerWithOptions(ctx, action,
			func(ctx workflow.Context, in ControlInput) (ControlResult, error) {
				return r.control(ctx, action, in), nil
			},
			workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, in ControlInput) error { return r.validate(action) }})
		if err != nil {
			return RolloutResult{}, err
		}
	}
	for _, action := range []string{UpdateApprove, UpdateReject} {
		err := workflow.SetUpdateHandlerWithOptions(ctx, action,
			func(ctx workflow.Context, in VoteInput) (VoteResult, error) {
				return r.vote(ctx, action, in), nil
			},
			workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, in VoteInput) error { return r.validateVote(ctx, in) }})
		if err != nil {
			return RolloutResult{}, err
		}
	}
	// The running wave reports its changes: the status query shows the wave live.
	progress := workflow.GetSignalChannel(ctx, signalWaveProgress)
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			var c rollout.WaveChange
			progress.Receive(ctx, &c)
			if i := r.waveIndex(c.Wave); i >= 0 && r.child != nil && c.Wave == r.status.Wave {
				r.status.Waves[i].Apply(c)
			}
		}
	})
	supersede := workflow.GetSignalChannel(ctx, signalSupersede)
	workflow.Go(ctx, func(ctx workflow.Context) {
		var s CommitSignal
		supersede.Receive(ctx, &s)
		if r.stop != rollout.StopNone || r.status.State.Done() {
			return
		}
		r.stop, r.stopper = rollout.StopSupersede, rollout.Control{Action: signalSupersede, By: "fleet", Reason: "superseded by " + rollout.Short(s.Commit), At: workflow.Now(ctx)}
		r.status.Controls = append(r.status.Controls, r.stopper)
		if r.status.State == rollout.StatePaused {
			r.setState(ctx, r.resumeState)
		}
		if r.child != nil {
			_ = r.child.SignalChildWorkflow(ctx, signalControl, ControlSignal{Action: rollout.ControlAbort}).Get(ctx, nil)
		}
	})
	defer func() {
		if ctx.Err() != nil {
			// Cancelled in Temporal: close open approval requests and tell the thread.
			r.withdrawApprovals()
			if r.status.Reason == "" {
				r.status.Reason = "the rollout's workflow was cancelled in Temporal"
			}
			r.slack.finish(ctx, rollout.EventCancelled)
		}
	}()
	r.setState(ctx, rollout.StateLoading)
	workflow.SetCurrentDetails(ctx, "Loading the plan at "+rollout.Short(in.Commit))

	var loaded activities.LoadPlanResult
	var git *activities.Git
	if err := workflow.ExecuteActivity(gitOptions(ctx, "load "+rollout.PlanFile+" at "+rollout.Short(in.Commit)),
		git.LoadPlan, activities.LoadPlanInput{Commit: in.Commit}).Get(ctx, &loaded); err != nil {
		return r.fail(ctx, "load plan: "+errorMessage(err))
	}
	r.plan, r.loaded = loaded.Plan, loaded
	r.site = rollout.SitesByName(r.plan.Sites)
	r.status.Commit, r.status.Subject = loaded.Commit, loaded.Subject
	for i := range r.plan.Waves {
		r.status.Waves = append(r.status.Waves, rollout.NewWaveStatus(r.plan, i))
	}
	r.status.Operators = r.plan.Operators()
	if r.plan.Notify.Slack != nil {
		r.slack.start(ctx, r.status.Rollout, r.plan.Notify.Slack.Channel, func() rollout.Status { return r.status.Digest() })
		r.slack.note(rollout.EventStarted, "")
	}

	for i, wave := range r.plan.Waves {
		// Between waves is a safe point: hold here while paused.
		if r.status.State == rollout.StatePaused {
			workflow.SetCurrentDetails(ctx, fmt.Sprintf("Paused before wave %s: waiting for resume", wave.Name))
		}
		if err := r.awaitResume(ctx); err != nil {
			return RolloutResult{}, err
		}
		if r.stop != rollout.StopNone {
			return r.stopped(ctx, i-1)
		}
		r.status.Wave = wave.Name
		reason, err := r.gates(ctx, i)
		if err != nil {
			return RolloutResult{}, err
		}
		if r.stop != rollout.StopNone {
			return r.stopped(ctx, i-1)
		}
		if reason != "" {
			return r.fail(ctx, reason)
		}
		r.setState(ctx, rollout.StatePromoting)
		workflow.SetCurrentDetails(ctx, fmt.Sprintf("Wave %d/%d %s: %d sites", i+1, len(r.plan.Waves), wave.Name, len(wave.Sites)))
		r.status.Waves[i].State = rollout.StatePromoting
		r.slack.note(rollout.EventWaveStarted, wave.Name)
		reason = r.runWave(ctx, i)
		r.slack.note(rollout.EventWaveFinished, wave.Name)
		if reason != "" && r.plan.Rollback.Automatic && r.stop != rollout.StopRollback {
			r.revert(ctx, rollout.RevertOrder(r.status.Waves, i, r.plan.Rollback.Scope), reason)
		}
		// A failure outranks a supersede: the newer commit still goes next, but this rollout
		// failed and says why.
		if reason != "" && (r.stop == rollout.StopNone || r.stop == rollout.StopSupersede) {
			return r.fail(ctx, reason)
		}
		if r.stop != rollout.StopNone {
			if reason != "" {
				r.status.Reason = strings.TrimSuffix(reason+"; "+r.status.Reason, "; ")
			}
			return r.stopped(ctx, i)
		}
	}
	r.setState(ctx, rollout.StateSucceeded)
	r.status.FinishedAt = workflow.Now(ctx)
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("Rolled out %s to %d sites", rollout.Short(r.status.Commit), len(r.plan.Sites)))
	r.drainHandlers(ctx)
	return RolloutResult{Status: r.status.Compact()}, nil
}

// gates runs what must hold before wave i starts: the policies, then the wave's approval if it
// needs one, then the policies again, because the approval may have taken hours and they now
// see it. It returns the reason the rollout fails with, or ""; the caller checks r.stop.
func (r *rolloutRun) gates(ctx workflow.Context, i int) (string, error) {
	reason, err := r.gate(ctx, i)
	if err != nil || reason != "" || r.stop != rollout.StopNone || r.plan.Waves[i].Approval == nil {
		return reason, err
	}
	if reason, err = r.approval(ctx, i); err != nil || reason != "" || r.stop != rollout.StopNone {
		return reason, err
	}
	return r.gate(ctx, i)
}

// gate evaluates the policies before wave i until they let it start. While they say wait, it
// sleeps on a durable timer (holding for a pause too) and evaluates again; when they deny, it
// returns the reason the rollout fails with. It returns "" early when an operator stops the
// rollout (the caller checks r.stop), and an error when the workflow is cancelled. Plans
// without policies skip it entirely.
func (r *rolloutRun) gate(ctx workflow.Context, i int) (string, error) {
	if r.plan.Policies.Empty() && len(r.loaded.Policies) == 0 {
		return "", nil
	}
	wave := r.plan.Waves[i]
	ws := &r.status.Waves[i]
	// held puts the wave back as it was when the rollout stops while it waits.
	held := func() (string, error) {
		ws.State, ws.Message = rollout.StatePending, ""
		return "", nil
	}
	for waits := 0; ; waits++ {
		req := activities.PolicyRequest{Builtins: r.plan.Policies, MinSoak: r.plan.MinSoakFor(wave), Files: r.loaded.Policies, Input: r.policyInput(ctx, i)}
		var d rollout.PolicyDecision
		if err := workflow.ExecuteLocalActivity(policyOptions(ctx), activities.EvaluatePolicy, req).Get(ctx, &d); err != nil {
			if ctx.Err() != nil {
				return "", ctx.Err()
			}
			return fmt.Sprintf("policy check before wave %s: %s", wave.Name, errorMessage(err)), nil
		}
		ws.Policy = &d
		if r.stop != rollout.StopNone {
			return held()
		}
		if d.Outcome == rollout.PolicyWait && waits >= maxPolicyWaits {
			d.Outcome, d.Deny = rollout.PolicyDeny, []string{fmt.Sprintf("the policies made wave %s wait %d times in a row without letting it start (last: %s)",
				wave.Name, waits, strings.Join(d.Reasons, "; "))}
		}
		switch d.Outcome {
		case rollout.PolicyAllow:
			if r.status.State == rollout.StatePaused {
				// Paused while the policies were evaluated: hold, then ask them again.
				if err := r.awaitResume(ctx); err != nil {
					return "", err
				}
				if r.stop != rollout.StopNone {
					return held()
				}
				continue
			}
			ws.State, ws.Message = rollout.StatePending, ""
			return "", nil
		case rollout.PolicyDeny:
			ws.State = rollout.StatePending
			ws.Message = "denied by policy: " + strings.Join(d.Deny, "; ")
			return fmt.Sprintf("policy denied wave %s: %s", wave.Name, strings.Join(d.Deny, "; ")), nil
		}
		ws.State = rollout.StateWaiting
		ws.Message = fmt.Sprintf("waiting until %s: %s", d.WaitUntil.UTC().Format(time.RFC3339), strings.Join(d.Reasons, "; "))
		if r.status.State != rollout.StatePaused {
			r.setState(ctx, rollout.StateWaiting)
		}
		workflow.SetCurrentDetails(ctx, fmt.Sprintf("Wave %d/%d %s %s", i+1, len(r.plan.Waves), wave.Name, ws.Message))
		tctx, cancel := workflow.WithCancel(ctx)
		timer := workflow.NewTimer(tctx, d.WaitUntil.Sub(workflow.Now(ctx)))
		err := workflow.Await(ctx, func() bool { return timer.IsReady() || r.stop != rollout.StopNone })
		cancel()
		if err != nil {
			return "", err
		}
		if r.stop != rollout.StopNone {
			return held()
		}
		if err := r.awaitResume(ctx); err != nil {
			return "", err
		}
		if r.stop != rollout.StopNone {
			return held()
		}
	}
}

// maxPolicyWaits bounds how often the policies may make one wave wait: settings that can never
// all hold at once (a daily freeze over the business hours) deny instead of waiting forever.
const maxPolicyWaits = 100

// policyInput is what the policies see before wave i, at the workflow's time.
func (r *rolloutRun) policyInput(ctx workflow.Context, i int) rollout.PolicyInput {
	return rollout.PolicyInput{
		Rollout: rollout.PolicyRollout{ID: r.status.Rollout, Fleet: r.status.Fleet, Commit: r.status.Commit,
			Author: r.loaded.Author, Message: r.loaded.Message, StartedAt: r.status.StartedAt},
		Wave:          r.plan.PolicyWave(i),
		PreviousWaves: rollout.PolicyHistory(r.status.Waves[:i]),
		Approvals:     rollout.PolicyApprovals(r.status.Waves),
		Now:           workflow.Now(ctx),
	}
}

// awaitResume holds while the rollout is paused and nobody stopped it; the caller checks r.stop.
func (r *rolloutRun) awaitResume(ctx workflow.Context) error {
	return workflow.Await(ctx, func() bool { return r.status.State != rollout.StatePaused || r.stop != rollout.StopNone })
}

// ending reports whether the rollout takes no more controls or votes: it ended, it is rolling
// back, or an operator (or a newer commit) stopped it.
func (r *rolloutRun) ending() bool {
	return r.status.State.Done() || r.status.State == rollout.StateRollingBack || r.stop != rollout.StopNone
}

// validate refuses controls that do not apply; a refused update never reaches history.
func (r *rolloutRun) validate(action string) error {
	switch {
	case r.ending():
		return fmt.Errorf("rollout %s is ending (%s): nothing to %s", r.status.Rollout, r.status.State, action)
	case action == UpdatePause && r.status.State == rollout.StatePaused:
		return fmt.Errorf("rollout %s is already paused", r.status.Rollout)
	case action == UpdateResume && r.status.State != rollout.StatePaused:
		return fmt.Errorf("rollout %s is not paused (%s)", r.status.Rollout, r.status.State)
	}
	return nil
}

// control applies an accepted control and forwards it to the running wave.
func (r *rolloutRun) control(ctx workflow.Context, action string, in ControlInput) ControlResult {
	c := rollout.Control{Action: action, By: in.By, Reason: in.Reason, At: workflow.Now(ctx)}
	r.status.Controls = append(r.status.Controls, c)
	forward := action
	var msg string
	switch action {
	case UpdatePause:
		r.resumeState = r.status.State
		r.setState(ctx, rollout.StatePaused)
		msg = "paused: no new batch or wave starts until resume; health checks and automatic reverts go on"
	case UpdateResume:
		r.setState(ctx, r.resumeState)
		msg = "resumed"
	case UpdateAbort, UpdateRollback:
		if r.status.State == rollout.StatePaused {
			r.setState(ctx, r.resumeState)
		}
		r.stop, r.stopper = rollout.StopCause(action), c
		forward = UpdateAbort
		msg = "aborting: promotion stops at the next safe point; promoted sites stay as they are"
		if action == UpdateRollback {
			msg = "rolling back: promotion stops at the next safe point, then every promoted site is reverted"
		}
	}
	if r.child != nil {
		// A wave that already ended ignores it; the rollout loop checks the same flags.
		_ = r.child.SignalChildWorkflow(ctx, signalControl, ControlSignal{Action: rollout.ControlAction(forward)}).Get(ctx, nil)
	}
	workflow.GetLogger(ctx).Info("rollout control", "rollout", r.status.Rollout, "action", action, "by", in.By)
	return ControlResult{State: r.status.State, Message: msg}
}

// stopped ends a rollout an operator aborted or rolled back; last is the last wave that ran.
func (r *rolloutRun) stopped(ctx workflow.Context, last int) (RolloutResult, error) {
	if r.stop == rollout.StopSupersede {
		// Not a failure: every promoted site has its verdict, and the newer commit goes next.
		r.status.Reason = strings.TrimSuffix(r.stopper.Reason+"; "+r.status.Reason, "; ")
		r.status.FinishedAt = workflow.Now(ctx)
		r.setState(ctx, rollout.StateSuperseded)
		workflow.SetCurrentDetails(ctx, "Stopped: "+r.stopper.Reason)
		r.drainHandlers(ctx)
		return RolloutResult{Status: r.status.Compact()}, nil
	}
	reason := fmt.Sprintf("%s by %s", map[rollout.StopCause]string{rollout.StopAbort: "aborted", rollout.StopRollback: "rolled back"}[r.stop], cmp.Or(r.stopper.By, "an operator"))
	if r.stopper.Reason != "" {
		reason += ": " + r.stopper.Reason
	}
	final := rollout.StateAborted
	if r.stop == rollout.StopRollback && last >= 0 {
		// Break-glass: every site the rollout promoted, whatever the plan's rollback settings.
		r.revert(ctx, rollout.RevertOrder(r.status.Waves, last, rollout.ScopeAll), reason)
	}
	if r.stop == rollout.StopRollback {
		final = rollout.StateRolledBack
	}
	if r.status.Reason != "" {
		reason += "; " + r.status.Reason
	}
	r.status.Reason = reason
	r.status.FinishedAt = workflow.Now(ctx)
	r.setState(ctx, final)
	workflow.SetCurrentDetails(ctx, "Stopped: "+reason)
	r.drainHandlers(ctx)
	return RolloutResult{Status: r.status.Compact()}, temporal.NewNonRetryableApplicationError(reason, ErrTypeRolloutAborted, nil, r.status.Compact())
}

// drainHandlers lets accepted updates finish, and the Slack thread report the end, before the
// workflow returns.
func (r *rolloutRun) drainHandlers(ctx workflow.Context) {
	r.slack.finish(ctx, rollout.EventFinished)
	_ = workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) })
}

// runWave runs wave i as a child workflow and returns a failure reason, or "".
func (r *rolloutRun) runWave(ctx workflow.Context, i int) string {
	wave := r.plan.Waves[i]
	in := WaveInput{Rollout: r.status.Rollout, Commit: r.status.Commit, Wave: wave, Health: r.plan.Health, Status: r.status.Waves[i],
		Automatic: r.plan.Rollback.Automatic}
	in.Sites = r.plan.SitesOf(wave.Sites)
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID:    WaveID(r.status.Rollout, wave.Name),
		StaticSummary: fmt.Sprintf("wave %s: %s to %s", wave.Name, sitesLabel(wave.Sites), rollout.Short(r.status.Commit)),
		TypedSearchAttributes: temporal.NewSearchAttributes(
			AttrFleet.ValueSet(r.status.Fleet), AttrCommit.ValueSet(r.status.Commit), AttrWave.ValueSet(wave.Name)),
	})
	var res WaveResult
	r.child = workflow.ExecuteChildWorkflow(cctx, Wave, in)
	err := r.child.Get(ctx, &res)
	r.child = nil
	if err == nil {
		r.status.Waves[i] = res.Status
		return ""
	}
	var app *temporal.ApplicationError
	if errors.As(err, &app) && app.Type() == ErrTypeWaveFailed {
		var ws rollout.WaveStatus
		if app.Details(&ws) == nil {
			r.status.Waves[i] = ws
		}
		return app.Message()
	}
	// The child ended without a verdict (terminated, timed out, reset): which of its sites it
	// promoted is unknown here, so the revert asks git about every one of them.
	ws := &r.status.Waves[i]
	ws.State, ws.Unsettled = rollout.StateFailed, true
	ws.Message = fmt.Sprintf("wave %s ended without a verdict: %s", wave.Name, errorMessage(err))
	return ws.Message
}

// revert writes revert commits for the sets, in order, and waits for the reverted sites to
// apply them. It runs on a disconnected context so that a cancellation of the rollout cannot
// stop a revert half way. No policy or pause holds it back.
func (r *rolloutRun) revert(ctx workflow.Context, sets []rollout.RevertSet, reason string) {
	if len(sets) == 0 {
		return
	}
	ctx, _ = workflow.NewDisconnectedContext(ctx)
	r.setState(ctx, rollout.StateRollingBack)
	for _, set := range sets {
		ws := &r.status.Waves[r.waveIndex(set.Wave)]
		index := ws.SiteIndex()
		workflow.SetCurrentDetails(ctx, fmt.Sprintf("Reverting %s in wave %s: %s", sitesLabel(set.Sites), set.Wave, reason))
		targets := make([]activities.Target, len(set.Sites))
		for i, name := range set.Sites {
			targets[i] = activities.Target{Site: name, Branch: ws.Sites[index[name]].Branch}
		}
		reverted, err := revertSites(ctx, r.status.Rollout, reason, targets, r.site, r.plan.Health.ConvergenceTimeout)
		if err != nil {
			r.status.Reason = fmt.Sprintf("revert of %s failed: %s", strings.Join(set.Sites, ", "), errorMessage(err))
			continue
		}
		now := workflow.Now(ctx)
		var late []activities.Target
		for i, v := range reverted {
			ws.Sites[index[v.Site]].ApplyRevert(v, "reverted", r.plan.Health.ConvergenceTimeout, now)
			if v.Revert == "" {
				late = append(late, targets[i])
			}
		}
		if ws.Unsettled && len(late) > 0 {
			r.revertLate(ctx, ws, index, late, reason)
		}
		r.slack.note(rollout.EventReverted, set.Wave)
	}
}

// revertLate reverts again, once the wave's last git activity can no longer be running, the
// sites of a wave that ended without a verdict where git held no promotion of the rollout: the
// wave's promotion in flight when it was terminated may still land after the first pass.
func (r *rolloutRun) revertLate(ctx workflow.Context, ws *rollout.WaveStatus, index map[string]int, targets []activities.Target, reason string) {
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("Waiting %s for a promotion of wave %s that may still be in flight, to revert it too", gitTimeout, ws.Name))
	if err := workflow.NewTimerWithOptions(ctx, gitTimeout, workflow.TimerOptions{Summary: "let a promotion in flight land"}).Get(ctx, nil); err != nil {
		return
	}
	reverted, err := revertSites(ctx, r.status.Rollout, reason, targets, r.site, r.plan.Health.ConvergenceTimeout)
	if err != nil {
		r.status.Reason = strings.TrimPrefix(r.status.Reason+"; ", "; ") + fmt.Sprintf("second revert of wave %s failed: %s", ws.Name, errorMessage(err))
		return
	}
	now := workflow.Now(ctx)
	for _, v := range reverted {
		if v.Revert != "" {
			ws.Sites[index[v.Site]].ApplyRevert(v, "reverted (its promotion landed late)", r.plan.Health.ConvergenceTimeout, now)
		}
	}
}

func (r *rolloutRun) waveIndex(name string) int {
	for i, w := range r.status.Waves {
		if w.Name == name {
			return i
		}
	}
	return -1
}

func (r *rolloutRun) setState(ctx workflow.Context, s rollout.State) {
	r.status.State = s
	updates := []temporal.SearchAttributeUpdate{AttrState.ValueSet(string(s)), AttrFleet.ValueSet(r.status.Fleet), AttrCommit.ValueSet(r.status.Commit)}
	if r.status.Wave != "" {
		updates = append(updates, AttrWave.ValueSet(r.status.Wave))
	}
	if err := workflow.UpsertTypedSearchAttributes(ctx, updates...); err != nil {
		workflow.GetLogger(ctx).Warn("cannot update search attributes", "rollout", r.status.Rollout, "error", err)
	}
}

func (r *rolloutRun) fail(ctx workflow.Context, reason string) (RolloutResult, error) {
	if r.status.Reason != "" {
		reason += "; " + r.status.Reason
	}
	r.status.Reason = reason
	r.status.FinishedAt = workflow.Now(ctx)
	r.setState(ctx, rollout.StateFailed)
	workflow.SetCurrentDetails(ctx, "Failed: "+reason)
	r.drainHandlers(ctx)
	return RolloutResult{Status: r.status.Compact()}, temporal.NewNonRetryableApplicationError(reason, ErrTypeRolloutFailed, nil, r.status.Compact())
}

// sitesLabel names up to three sites and counts the rest.
func sitesLabel(sites []string) string {
	if len(sites) <= 3 {
		return fmt.Sprintf("%s (%s)", rollout.Count(len(sites), "site"), strings.Join(sites, ", "))
	}
	return fmt.Sprintf("%s (%s, ...)", rollout.Count(len(sites), "site"), strings.Join(sites[:3], ", "))
}
