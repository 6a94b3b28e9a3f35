package workflows

import (
	"fmt"
	"slices"
	"strings"

	"go.temporal.io/sdk/workflow"

	"github.com/fleetwave/fleetwave/activities"
	"github.com/fleetwave/fleetwave/rollout"
)

// approval holds wave i until its approvers approve it. It asks (resolving "@groups" to their
// members at that moment), waits on a durable timer for the quorum, a rejection or the timeout,
// and returns the reason the rollout fails with (rejected, or expired or unmet with onTimeout
// reject), or "" to go on; the caller checks r.stop. On a timeout with onTimeout pause the
// rollout pauses, and a resume asks again, keeping the approvals given by approvers still
// eligible. A pause holds an approved wave. Waves without approval skip it entirely.
func (r *rolloutRun) approval(ctx workflow.Context, i int) (string, error) {
	wave := r.plan.Waves[i]
	a := wave.Approval
	if a == nil {
		return "", nil
	}
	ws := &r.status.Waves[i]
	held := func() (string, error) {
		if ws.Approval != nil && ws.Approval.Outcome != "" {
			// Decided in the same moment the rollout stopped: still replace the buttons.
			r.slack.note(rollout.EventApprovalDecided, wave.Name)
		}
		r.withdrawApprovals()
		ws.State = rollout.StatePending
		return "", nil
	}
	var kept []rollout.Vote
	for {
		resolved, err := r.resolveApprovers(ctx, a)
		if err != nil {
			return "", err
		}
		eligible, unresolved := resolved.Members, resolved.Unresolved
		now := workflow.Now(ctx)
		ws.Approval = &rollout.ApprovalStatus{Approvers: a.Approvers, Eligible: eligible, Unresolved: unresolved,
			GroupIDs: resolved.IDs, Quorum: a.Quorum, RequestedAt: now, ExpiresAt: now.Add(a.Timeout)}
		for _, v := range kept {
			if slices.Contains(eligible, v.By) {
				ws.Approval.Votes = append(ws.Approval.Votes, v)
			}
		}
		if len(eligible) < a.Quorum {
			ws.Approval.Outcome = rollout.ApprovalUnmet
		}
		ws.State, ws.Message = rollout.StateApproval, ws.Approval.Summary()
		if r.status.State != rollout.StatePaused {
			r.setState(ctx, rollout.StateApproval)
		}
		workflow.SetCurrentDetails(ctx, fmt.Sprintf("Wave %d/%d %s %s (approvers: %s)", i+1, len(r.plan.Waves), wave.Name, ws.Message, strings.Join(a.Approvers, ", ")))
		workflow.GetLogger(ctx).Info("approval requested", "rollout", r.status.Rollout, "wave", wave.Name, "eligible", len(eligible))
		r.slack.note(rollout.EventApprovalRequested, wave.Name)

		if ws.Approval.Outcome == "" {
			tctx, cancel := workflow.WithCancel(ctx)
			timer := workflow.NewTimer(tctx, a.Timeout)
			err = workflow.Await(ctx, func() bool { return timer.IsReady() || ws.Approval.Outcome != "" || r.stop != rollout.StopNone })
			cancel()
			if err != nil {
				return "", err
			}
			if r.stop != rollout.StopNone {
				return held()
			}
			if ws.Approval.Outcome == "" {
				ws.Approval.Outcome = rollout.ApprovalExpired
			}
		}
		ws.Message = ws.Approval.Summary()
		r.slack.note(rollout.EventApprovalDecided, wave.Name)
		switch ws.Approval.Outcome {
		case rollout.ApprovalApproved:
			// A pause holds the approved wave; the caller sees a stop in r.stop.
			if err := r.awaitResume(ctx); err != nil {
				return "", err
			}
			ws.State = rollout.StatePending
			return "", nil
		case rollout.ApprovalRejected:
			ws.State = rollout.StatePending
			v := ws.Approval.Votes[len(ws.Approval.Votes)-1]
			return fmt.Sprintf("wave %s %s", wave.Name, v), nil
		}
		// Expired, or unmet: the plan's onTimeout says what now.
		why := fmt.Sprintf("approval of wave %s %s (timeout %s)", wave.Name, ws.Message, a.Timeout)
		if ws.Approval.Outcome == rollout.ApprovalUnmet {
			why = fmt.Sprintf("approval of wave %s %s", wave.Name, ws.Message)
			if len(unresolved) > 0 {
				why += " (" + strings.Join(unresolved, "; ") + ")"
			}
		}
		if a.OnTimeout == rollout.OnTimeoutReject {
			ws.State = rollout.StatePending
			return why, nil
		}
		kept = slices.Clone(ws.Approval.Votes)
		c := rollout.Control{Action: UpdatePause, By: "fleetwave", At: workflow.Now(ctx), Reason: why + "; resume to ask again"}
		r.status.Controls = append(r.status.Controls, c)
		if r.status.State != rollout.StatePaused {
			r.resumeState = rollout.StateApproval
			r.setState(ctx, rollout.StatePaused)
		}
		ws.Message = c.Reason
		workflow.SetCurrentDetails(ctx, "Paused: "+c.Reason)
		if err := r.awaitResume(ctx); err != nil {
			return "", err
		}
		if r.stop != rollout.StopNone {
			ws.State = rollout.StatePending
			return "", nil
		}
	}
}

// withdrawApprovals closes every open approval request of a rollout that stops, so nobody can
// vote on it and its Slack buttons give way.
func (r *rolloutRun) withdrawApprovals() {
	for i := range r.status.Waves {
		if ws := &r.status.Waves[i]; ws.Approval != nil && ws.Approval.Outcome == "" {
			ws.Approval.Outcome = rollout.ApprovalWithdrawn
			ws.Message = ws.Approval.Summary()
			r.slack.note(rollout.EventApprovalDecided, ws.Name)
		}
	}
}

// resolveApprovers returns the user IDs that may vote (Members): the plan's user IDs and the
// members of its groups now. A group that cannot be resolved is reported (Unresolved) and adds
// nobody: fail closed. The error is the workflow's cancellation, never Slack's.
func (r *rolloutRun) resolveApprovers(ctx workflow.Context, a *rollout.Approval) (activities.ResolveResult, error) {
	var res activities.ResolveResult
	if groups := a.Groups(); len(groups) > 0 {
		var slack *activities.Slack
		err := workflow.ExecuteActivity(slackOptions(ctx, "resolve approvers @"+strings.Join(groups, ", @")),
			slack.ResolveGroups, activities.ResolveInput{Groups: groups}).Get(ctx, &res)
		switch {
		case err != nil && ctx.Err() != nil:
			return res, ctx.Err()
		case err != nil:
			res = activities.ResolveResult{}
			for _, g := range groups {
				res.Unresolved = append(res.Unresolved, fmt.Sprintf("@%s could not be resolved: %s", g, errorMessage(err)))
			}
		}
	}
	res.Members = append(res.Members, a.Users()...)
	slices.Sort(res.Members)
	res.Members = slices.Compact(res.Members)
	return res, nil
}

// validateVote refuses a vote that does not count; a refused vote never reaches history.
func (r *rolloutRun) validateVote(ctx workflow.Context, in VoteInput) error {
	switch {
	case r.plan == nil:
		return fmt.Errorf("rollout %s has not loaded its plan yet: nothing to vote on", r.status.Rollout)
	case r.ending():
		return fmt.Errorf("rollout %s is ending (%s): nothing to vote on", r.status.Rollout, r.status.State)
	}
	ws, err := r.voteWave(in.Wave)
	if err != nil {
		return err
	}
	return ws.Approval.CheckVote(ws.Name, in.By, workflow.Now(ctx))
}

// voteWave finds the wave a vote is for: the named one, or the one waiting for approval.
func (r *rolloutRun) voteWave(name string) (*rollout.WaveStatus, error) {
	if name == "" {
		// The wave whose approval was asked for last: open, or saying why it no longer is.
		for i := len(r.status.Waves) - 1; i >= 0; i-- {
			if ws := &r.status.Waves[i]; ws.Approval != nil {
				return ws, nil
			}
		}
		return nil, fmt.Errorf("no wave of rollout %s is waiting for approval", r.status.Rollout)
	}
	w, i, ok := r.plan.Wave(name)
	switch {
	case !ok:
		return nil, fmt.Errorf("rollout %s has no wave %q", r.status.Rollout, name)
	case w.Approval == nil:
		return nil, fmt.Errorf("wave %s of rollout %s needs no approval", name, r.status.Rollout)
	case r.status.Waves[i].Approval == nil:
		return nil, fmt.Errorf("wave %s of rollout %s is not waiting for approval yet (%s)", name, r.status.Rollout, r.status.Waves[i].State)
	}
	return &r.status.Waves[i], nil
}

// vote records an accepted vote; the approval loop sees the outcome.
func (r *rolloutRun) vote(ctx workflow.Context, action string, in VoteInput) VoteResult {
	ws, err := r.voteWave(in.Wave)
	if err != nil {
		// The validator ran in the same workflow task; this only guards replays of old code.
		return VoteResult{Wave: in.Wave, Message: err.Error()}
	}
	v := rollout.Vote{By: in.By, Approve: action == UpdateApprove, Via: in.Via, Comment: in.Comment, At: workflow.Now(ctx)}
	ws.Approval.Add(v)
	ws.Message = ws.Approval.Summary()
	workflow.GetLogger(ctx).Info("approval vote", "rollout", r.status.Rollout, "wave", ws.Name, "action", action, "by", in.By, "via", in.Via)
	return VoteResult{Wave: ws.Name, Outcome: ws.Approval.Outcome, Message: fmt.Sprintf("wave %s %s; %s", ws.Name, v, ws.Approval.Summary())}
}
