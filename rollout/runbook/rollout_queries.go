package runbook

import (
	"fmt"
	"strings"
	"time"

	"github.com/fleetwave/fleetwave/rollout"
)

// Interrupted reports whether the waiting step c should end now, before its timer: a stop
// ends every wait, a resume ends a hold, a decision ends the wait for votes.
func (r Rollout) Interrupted(c Step) bool {
	if r.Stop != rollout.StopNone {
		return true
	}
	switch c.(type) {
	case HoldPaused:
		return r.Status.State != rollout.StatePaused
	case AwaitVotes:
		a := r.Status.Waves[r.At.Wave].Approval
		return a != nil && a.Outcome != ""
	}
	return false
}

// Ending reports whether the rollout takes no more controls or votes: it ended, it is rolling
// back, or an operator (or a newer commit) stopped it.
func (r Rollout) Ending() bool {
	return r.Status.State.Done() || r.Status.State == rollout.StateRollingBack || r.Stop != rollout.StopNone
}

// CheckControl returns why a control must be refused now, or nil.
func (r Rollout) CheckControl(action ControlAction) error {
	switch {
	case r.Ending():
		return fmt.Errorf("rollout %s is ending (%s): nothing to %s", r.Status.Rollout, r.Status.State, action)
	case action == ControlPause && r.Status.State == rollout.StatePaused:
		return fmt.Errorf("rollout %s is already paused", r.Status.Rollout)
	case action == ControlResume && r.Status.State != rollout.StatePaused:
		return fmt.Errorf("rollout %s is not paused (%s)", r.Status.Rollout, r.Status.State)
	}
	return nil
}

// ControlMessage says what an accepted control does.
func ControlMessage(action ControlAction) string {
	switch action {
	case ControlPause:
		return "paused: no new batch or wave starts until resume; health checks and automatic reverts go on"
	case ControlResume:
		return "resumed"
	case ControlRollback:
		return "rolling back: promotion stops at the next safe point, then every promoted site is reverted"
	}
	return "aborting: promotion stops at the next safe point; promoted sites stay as they are"
}

// CheckVote returns why a vote by user on wave ("" for the wave asked last), come via via
// (rollout.ViaSlack, rollout.ViaCLI), must be refused at now, or nil.
func (r Rollout) CheckVote(wave, user, via string, now time.Time) error {
	switch {
	case r.Plan == nil:
		return fmt.Errorf("rollout %s has not loaded its plan yet: nothing to vote on", r.Status.Rollout)
	case r.Ending():
		return fmt.Errorf("rollout %s is ending (%s): nothing to vote on", r.Status.Rollout, r.Status.State)
	}
	i, err := r.VoteWave(wave)
	if err != nil {
		return err
	}
	ws := r.Status.Waves[i]
	if err := ws.Approval.CheckVia(ws.Name, via); err != nil {
		return err
	}
	return ws.Approval.CheckVote(ws.Name, user, now)
}

// VoteWave finds the wave a vote is for: the named one, or the one whose approval was asked
// for last (open, or saying why it no longer is).
func (r Rollout) VoteWave(name string) (int, error) {
	if name == "" {
		if i, ok := r.Status.ApprovalWave(); ok {
			return i, nil
		}
		return -1, fmt.Errorf("no wave of rollout %s is waiting for approval", r.Status.Rollout)
	}
	if r.Plan == nil {
		return -1, fmt.Errorf("rollout %s has not loaded its plan yet", r.Status.Rollout)
	}
	w, i, ok := r.Plan.Wave(name)
	switch {
	case !ok:
		return -1, fmt.Errorf("rollout %s has no wave %q", r.Status.Rollout, name)
	case w.Approval == nil:
		return -1, fmt.Errorf("wave %s of rollout %s needs no approval", name, r.Status.Rollout)
	case r.Status.Waves[i].Approval == nil:
		return -1, fmt.Errorf("wave %s of rollout %s is not waiting for approval yet (%s)", name, r.Status.Rollout, r.Status.Waves[i].State)
	}
	return i, nil
}

// PolicyInput is what the policies see before wave i at now.
func (r Rollout) PolicyInput(i int, now time.Time) rollout.PolicyInput {
	return rollout.PolicyInput{
		Rollout: rollout.PolicyRollout{ID: r.Status.Rollout, Fleet: r.Status.Fleet, Commit: r.Status.Commit,
			Author: r.Author, Message: r.Message, StartedAt: r.Status.StartedAt},
		Wave:          r.Plan.PolicyWave(i),
		PreviousWaves: rollout.PolicyHistory(r.Status.Waves[:i]),
		Approvals:     rollout.PolicyApprovals(r.Status.Waves),
		Now:           now,
	}
}

// Details is what the rollout is doing, in a sentence: the Temporal UI's current details. It is
// derived from the state, so it is never stale.
func (r Rollout) Details() string {
	d := r.details()
	if r.Status.Simulated && d != "" {
		d = "**Simulated sites** (--driver sim): " + d
	}
	return d
}

func (r Rollout) details() string {
	st := r.Status
	switch {
	case r.Plan == nil:
		return "Loading the plan at " + rollout.Short(st.Commit)
	case r.Phase == PhaseDone:
		switch st.Cause {
		case "":
			d := fmt.Sprintf("Rolled out %s to %s", rollout.Short(st.Commit), rollout.Count(len(r.Plan.Sites), "site"))
			if st.Reason != "" {
				d += "; " + st.Reason // the Deferred sites
			}
			return d
		case rollout.CauseSuperseded:
			return "Stopped: " + r.Stopper.Reason
		case rollout.CauseAborted, rollout.CauseRolledBack, rollout.CauseWatchDegraded:
			return "Stopped: " + st.Reason
		}
		return "Failed: " + st.Reason
	case r.Phase == PhaseRevert && r.Revert.Next < len(r.Revert.Sets):
		set := r.Revert.Sets[r.Revert.Next]
		if r.Revert.Late {
			return fmt.Sprintf("Waiting for a promotion of wave %s that may still be in flight, to revert it too", set.Wave)
		}
		return fmt.Sprintf("Reverting %s in wave %s: %s", rollout.SitesLabel(set.Sites), set.Wave, r.Failure)
	case r.Stop == rollout.StopWatch:
		return "Stopping: " + r.Stopper.Reason
	case r.At.Wave >= len(r.Plan.Waves):
		return ""
	}
	wave, ws := r.Plan.Waves[r.At.Wave], st.Waves[r.At.Wave]
	head := fmt.Sprintf("Wave %d/%d %s", r.At.Wave+1, len(r.Plan.Waves), wave.Name)
	switch r.Phase {
	case PhaseHold:
		if r.At.Gate == GateApproval && r.At.Entered && ws.Approval != nil && ws.Approval.Outcome != rollout.ApprovalApproved {
			return "Paused: " + ws.Message
		}
		return fmt.Sprintf("Paused before wave %s: waiting for resume", wave.Name)
	case PhasePolicy:
		return head + ": evaluating the policies"
	case PhaseWait:
		return head + " " + ws.Message
	case PhaseAlone:
		return head + ": checking that no earlier rollout of the fleet still runs"
	case PhaseApprovers:
		return fmt.Sprintf("%s: resolving its approvers @%s", head, strings.Join(wave.Approval.Groups(), ", @"))
	case PhaseApproval:
		return fmt.Sprintf("%s %s (approvers: %s)", head, ws.Message, strings.Join(wave.Approval.Approvers, ", "))
	case PhaseWave:
		return fmt.Sprintf("%s: %s", head, rollout.Count(len(wave.Sites), "site"))
	}
	return ""
}
