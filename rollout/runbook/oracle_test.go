package runbook

// The oracle: the runbooks as they were before the gate cursor, kept to check the new machines
// against (TestMachinesAgreeWithTheOracle). Generated once from rollout/lifecycle.go and
// rollout/engine.go at db13b7d; every top-level name is prefixed with old.

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/fleetwave/fleetwave/rollout"
)

type oldPhase string

const (
	oldPhaseLoad      oldPhase = "Load"      // loading the plan at the commit
	oldPhaseHold      oldPhase = "Hold"      // paused at a safe point; Then says what comes after
	oldPhasePolicy    oldPhase = "Policy"    // the policies are evaluated before the wave
	oldPhaseWait      oldPhase = "Wait"      // the policies made the wave wait until a time
	oldPhaseApprovers oldPhase = "Approvers" // resolving the wave's approver groups
	oldPhaseApproval  oldPhase = "Approval"  // the wave's approval request is open
	oldPhaseWave      oldPhase = "Wave"      // the wave is running
	oldPhaseRevert    oldPhase = "Revert"    // reverting by a rollback scope or a rollback
	oldPhaseDone      oldPhase = "Done"
)

type oldHold string

const (
	oldholdBeforeWave oldHold = "before-wave" // the safe point before a wave
	oldholdPolicy     oldHold = "policy"      // evaluate the policies again
	oldholdApproved   oldHold = "approved"    // start the approved wave (after the policies' second look)
	oldholdApproval   oldHold = "approval"    // ask for the approval again (onTimeout pause)
)

type oldAfterRevert string

const (
	oldafterWave oldAfterRevert = "wave" // end after a failed wave
	oldafterStop oldAfterRevert = "stop" // end an operator's rollback, or the watch's failure
)

type oldRollout struct {
	Status rollout.Status
	// Plan is the plan at the commit, once loaded; Author and Message describe the commit
	// for the policies, and Policies says whether the plan or its Rego files have any.
	Plan     *rollout.Plan `json:",omitempty"`
	Author   string
	Message  string
	Policies bool

	Phase oldPhase
	// Wave is the index of the wave the runbook is at; Pass is 0 for the policies' look
	// before a wave's approval, 1 after it; Waits counts the policies' waits in a row.
	Wave  int
	Pass  int
	Waits int
	// Then is what a hold goes on with; After what a revert does;
	// Late is true while an unsettled wave's sites are reverted a second time.
	Then  oldHold
	After oldAfterRevert
	Late  bool
	// ResumeState is the state a paused rollout resumes to.
	ResumeState rollout.State
	// Stop says why the rollout stops early, once an operator (or a newer commit) asked;
	// Stopper is that control.
	Stop    rollout.StopCause
	Stopper rollout.Control
	// Kept are the votes of an approval request that expired under onTimeout pause, carried
	// to the request made on resume.
	Kept []rollout.Vote
	// Failure is why the rollout fails once its revert is done; Reverts the sets to revert,
	// Revert the index of the one in progress.
	Failure string
	// FailCause is Failure's code (Status.Cause) once a wave failed.
	FailCause string `json:",omitempty"`
	Reverts   []rollout.RevertSet
	Revert    int
	// Details is what the rollout is doing, in a sentence (the Temporal UI's current details).
	Details string
	// Watching: the sites of every wave that succeeded stay observed until the rollout ends
	// (plan health.watch: rollout), each wave by a watch of its own (versioned by the
	// workflow: rollouts recorded before watched nothing once a wave ended). WatchWave is the
	// wave where the watch saw a site degrade (Stop is StopWatch then).
	Watching  bool `json:",omitempty"`
	WatchWave int  `json:",omitempty"`
}

func oldNewRollout(id, fleet, commit string) oldRollout {
	return oldRollout{Status: rollout.Status{Rollout: id, Fleet: fleet, Commit: commit}, Phase: oldPhaseLoad}
}

type oldturn struct {
	r    oldRollout
	cmds []any
}

func (s *oldturn) emit(c ...any) { s.cmds = append(s.cmds, c...) }

func (s *oldturn) setState(st rollout.State) {
	s.r.Status.State = st
	s.emit(SetState{State: st, Wave: s.r.Status.Wave})
}

func (s *oldturn) note(kind, wave string) {
	s.emit(PostEvent{Event: rollout.Event{Kind: kind, Wave: wave}})
}

func oldNext(r oldRollout, e Event) (oldRollout, []any) {
	r.Status.Waves = slices.Clone(r.Status.Waves)
	r.Status.Controls = slices.Clone(r.Status.Controls)
	s := &oldturn{r: r}
	if want, ok := oldawaitedIn(e); ok && !slices.Contains(want, r.Phase) {
		// The workflow fed the answer to a step the runbook did not ask for: a bug, never a
		// fact to guess about.
		panic(fmt.Sprintf("rollout: %T in phase %s, want %v", e, r.Phase, want))
	}
	switch e := e.(type) {
	case Started:
		s.r.Status.StartedAt = e.At
		s.r.Phase = oldPhaseLoad
		s.setState(rollout.StateLoading)
		s.r.Details = "Loading the plan at " + rollout.Short(s.r.Status.Commit)
		s.emit(LoadPlan{})
	case PlanLoaded:
		s.loaded(e)
	case StepFailed:
		s.failed(e)
	case PolicyDecided:
		s.decided(e)
	case ApproversResolved:
		s.resolved(e)
	case Woke:
		s.woke(e.At)
	case WaveEnded:
		s.waveEnded(e)
	case Reverted:
		s.reverted(e)
	case Controlled:
		s.control(e.Control)
	case VoteCast:
		s.vote(e)
	case WaveProgressed:
		if s.r.Phase == oldPhaseWave && e.Change.Wave == s.r.Status.Wave {
			ws := s.wave()
			ws.Sites = slices.Clone(ws.Sites)
			ws.Apply(e.Change)
		}
	case WatchDegraded:
		s.watchDegraded(e)
	case Cancelled:
		s.withdrawApprovals()
		if s.r.Status.Cause == "" {
			s.r.Status.Cause = rollout.CauseCancelled
		}
		if s.r.Status.Reason == "" {
			s.r.Status.Reason = "the rollout's workflow was cancelled in Temporal"
		}
	default:
		panic(fmt.Sprintf("rollout: unknown rollout event %T", e))
	}
	return s.r, s.cmds
}

func oldawaitedIn(e Event) (phases []oldPhase, ok bool) {
	switch e.(type) {
	case Started, PlanLoaded:
		return []oldPhase{oldPhaseLoad}, true
	case StepFailed:
		return []oldPhase{oldPhaseLoad, oldPhasePolicy}, true
	case PolicyDecided:
		return []oldPhase{oldPhasePolicy}, true
	case ApproversResolved:
		return []oldPhase{oldPhaseApprovers}, true
	case Woke:
		return []oldPhase{oldPhaseWait, oldPhaseApproval, oldPhaseHold}, true
	case WaveEnded:
		return []oldPhase{oldPhaseWave}, true
	case Reverted:
		return []oldPhase{oldPhaseRevert}, true
	}
	return nil, false
}

func (r oldRollout) Interrupted(c any) bool {
	if r.Stop != rollout.StopNone {
		return true
	}
	switch c.(type) {
	case HoldPaused:
		return r.Status.State != rollout.StatePaused
	case AwaitVotes:
		a := r.Status.Waves[r.Wave].Approval
		return a != nil && a.Outcome != ""
	}
	return false
}

func (r oldRollout) Ending() bool {
	return r.Status.State.Done() || r.Status.State == rollout.StateRollingBack || r.Stop != rollout.StopNone
}

func (r oldRollout) CheckControl(action ControlAction) error {
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

func (r oldRollout) CheckVote(wave, user string, now time.Time) error {
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
	return ws.Approval.CheckVote(ws.Name, user, now)
}

func (r oldRollout) VoteWave(name string) (int, error) {
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

func (r oldRollout) PolicyInput(i int, now time.Time) rollout.PolicyInput {
	return rollout.PolicyInput{
		Rollout: rollout.PolicyRollout{ID: r.Status.Rollout, Fleet: r.Status.Fleet, Commit: r.Status.Commit,
			Author: r.Author, Message: r.Message, StartedAt: r.Status.StartedAt},
		Wave:          r.Plan.PolicyWave(i),
		PreviousWaves: rollout.PolicyHistory(r.Status.Waves[:i]),
		Approvals:     rollout.PolicyApprovals(r.Status.Waves),
		Now:           now,
	}
}

func (s *oldturn) wave() *rollout.WaveStatus { return &s.r.Status.Waves[s.r.Wave] }

func (s *oldturn) approval(i int) *rollout.ApprovalStatus {
	ws := &s.r.Status.Waves[i]
	if ws.Approval == nil {
		return nil
	}
	a := *ws.Approval
	a.Votes = slices.Clone(a.Votes)
	ws.Approval = &a
	return &a
}

func (s *oldturn) loaded(e PlanLoaded) {
	r := &s.r
	r.Plan, r.Author, r.Message = e.Plan, e.Author, e.Message
	r.Policies = e.Policies || !e.Plan.Policies.Empty()
	r.Status.Commit, r.Status.Subject = e.Commit, e.Subject
	r.Status.Simulated = e.Simulated
	r.Status.Waves = nil
	for i := range e.Plan.Waves {
		r.Status.Waves = append(r.Status.Waves, rollout.NewWaveStatus(e.Plan, i))
	}
	r.Status.Operators = e.Plan.Operators()
	if e.Plan.Notify.Slack != nil {
		s.emit(StartThread{Channel: e.Plan.Notify.Slack.Channel})
		s.note(rollout.EventStarted, "")
	}
	s.beforeWave(e.At, 0)
}

func (s *oldturn) failed(e StepFailed) {
	switch s.r.Phase {
	case oldPhaseLoad:
		s.fail(e.At, rollout.CauseLoadFailed, "load plan: "+e.Message)
	case oldPhasePolicy:
		s.fail(e.At, rollout.CausePolicyFailed, fmt.Sprintf("policy check before wave %s: %s", s.r.Plan.Waves[s.r.Wave].Name, e.Message))
	default:
		s.fail(e.At, rollout.CauseStepFailed, e.Message)
	}
}

func (s *oldturn) beforeWave(now time.Time, i int) {
	r := &s.r
	r.Wave, r.Pass, r.Waits = i, 0, 0
	if i == len(r.Plan.Waves) {
		s.succeed(now)
		return
	}
	if r.Status.State == rollout.StatePaused {
		r.Details = fmt.Sprintf("Paused before wave %s: waiting for resume", r.Plan.Waves[i].Name)
		s.hold(oldholdBeforeWave)
		return
	}
	s.atWave(now)
}

func (s *oldturn) atWave(now time.Time) {
	r := &s.r
	if r.Stop != rollout.StopNone {
		s.stopBeforeWave(now)
		return
	}
	r.Status.Wave = r.Plan.Waves[r.Wave].Name
	s.policy(now)
}

func (s *oldturn) hold(then oldHold) {
	s.r.Phase, s.r.Then = oldPhaseHold, then
	s.emit(HoldPaused{})
}

func (s *oldturn) policy(now time.Time) {
	r := &s.r
	if !r.Policies {
		s.policyPassed(now)
		return
	}
	r.Phase = oldPhasePolicy
	s.emit(EvaluatePolicies{Wave: r.Wave, Input: r.PolicyInput(r.Wave, now), MinSoak: r.Plan.MinSoakFor(r.Plan.Waves[r.Wave])})
}

func (s *oldturn) policyHeld(now time.Time) {
	ws := s.wave()
	ws.State, ws.Message = rollout.StatePending, ""
	s.stopBeforeWave(now)
}

func (s *oldturn) decided(e PolicyDecided) {
	r := &s.r
	wave := r.Plan.Waves[r.Wave]
	ws := s.wave()
	d := e.Decision
	ws.Policy = &d
	if r.Stop != rollout.StopNone {
		s.policyHeld(e.At)
		return
	}
	if d.Outcome == rollout.PolicyWait && r.Waits >= MaxPolicyWaits {
		d.Outcome, d.Deny = rollout.PolicyDeny, []string{fmt.Sprintf("the policies made wave %s wait %d times in a row without letting it start (last: %s)",
			wave.Name, r.Waits, strings.Join(d.Reasons, "; "))}
	}
	switch d.Outcome {
	case rollout.PolicyAllow:
		if r.Status.State == rollout.StatePaused {
			// Paused while the policies were evaluated: hold, then ask them again.
			s.hold(oldholdPolicy)
			return
		}
		ws.State, ws.Message = rollout.StatePending, ""
		s.policyPassed(e.At)
		return
	case rollout.PolicyDeny:
		ws.State = rollout.StatePending
		ws.Message = "denied by policy: " + strings.Join(d.Deny, "; ")
		s.fail(e.At, rollout.CausePolicyDenied, fmt.Sprintf("policy denied wave %s: %s", wave.Name, strings.Join(d.Deny, "; ")))
		return
	}
	ws.State = rollout.StateWaiting
	ws.Message = fmt.Sprintf("waiting until %s: %s", d.WaitUntil.UTC().Format(time.RFC3339), strings.Join(d.Reasons, "; "))
	if r.Status.State != rollout.StatePaused {
		s.setState(rollout.StateWaiting)
	}
	r.Details = fmt.Sprintf("Wave %d/%d %s %s", r.Wave+1, len(r.Plan.Waves), wave.Name, ws.Message)
	r.Phase = oldPhaseWait
	s.emit(WaitUntil{At: d.WaitUntil})
}

func (s *oldturn) policyPassed(now time.Time) {
	r := &s.r
	if r.Pass == 0 && r.Plan.Waves[r.Wave].Approval != nil {
		r.Kept = nil
		s.requestApproval(now)
		return
	}
	s.startWave(now)
}

func (s *oldturn) requestApproval(now time.Time) {
	a := s.r.Plan.Waves[s.r.Wave].Approval
	if groups := a.Groups(); len(groups) > 0 {
		s.r.Phase = oldPhaseApprovers
		s.emit(ResolveApprovers{Groups: groups})
		return
	}
	s.resolved(ApproversResolved{At: now})
}

func (s *oldturn) resolved(e ApproversResolved) {
	r := &s.r
	wave := r.Plan.Waves[r.Wave]
	a := wave.Approval
	members, unresolved, ids := slices.Clone(e.Members), e.Unresolved, e.IDs
	if e.Err != "" {
		members, unresolved, ids = nil, nil, nil
		for _, g := range a.Groups() {
			unresolved = append(unresolved, fmt.Sprintf("@%s could not be resolved: %s", g, e.Err))
		}
	}
	members = append(members, a.Users()...)
	slices.Sort(members)
	members = slices.Compact(members)
	ws := s.wave()
	ws.Approval = &rollout.ApprovalStatus{Approvers: a.Approvers, Eligible: members, Unresolved: unresolved,
		GroupIDs: ids, Quorum: a.Quorum, RequestedAt: e.At, ExpiresAt: e.At.Add(a.Timeout)}
	for _, v := range r.Kept {
		if slices.Contains(members, v.By) {
			ws.Approval.Votes = append(ws.Approval.Votes, v)
		}
	}
	if len(members) < a.Quorum {
		ws.Approval.Outcome = rollout.ApprovalUnmet
	}
	ws.State, ws.Message = rollout.StateApproval, ws.Approval.Summary()
	if r.Status.State != rollout.StatePaused {
		s.setState(rollout.StateApproval)
	}
	r.Details = fmt.Sprintf("Wave %d/%d %s %s (approvers: %s)", r.Wave+1, len(r.Plan.Waves), wave.Name, ws.Message, strings.Join(a.Approvers, ", "))
	s.note(rollout.EventApprovalRequested, wave.Name)
	if ws.Approval.Outcome == "" {
		r.Phase = oldPhaseApproval
		wait := AwaitVotes{Timeout: a.Timeout}
		if a.RemindBefore > 0 {
			wait.Remind = ws.Approval.ExpiresAt.Add(-a.RemindBefore)
			wait.Reminder = rollout.Event{Kind: rollout.EventApprovalReminder, Wave: wave.Name}
		}
		s.emit(wait)
		return
	}
	s.approvalDecided(e.At)
}

func (s *oldturn) approvalDecided(now time.Time) {
	r := &s.r
	wave := r.Plan.Waves[r.Wave]
	a := wave.Approval
	ws := s.wave()
	ws.Message = ws.Approval.Summary()
	s.note(rollout.EventApprovalDecided, wave.Name)
	switch ws.Approval.Outcome {
	case rollout.ApprovalApproved:
		if r.Status.State == rollout.StatePaused {
			// A pause holds the approved wave.
			s.hold(oldholdApproved)
			return
		}
		s.approved(now)
		return
	case rollout.ApprovalRejected:
		ws.State = rollout.StatePending
		s.fail(now, rollout.CauseApprovalRejected, fmt.Sprintf("wave %s %s", wave.Name, ws.Approval.Votes[len(ws.Approval.Votes)-1]))
		return
	}
	// Expired, or unmet: the plan's onTimeout says what now.
	why := fmt.Sprintf("approval of wave %s %s (timeout %s)", wave.Name, ws.Message, a.Timeout)
	if ws.Approval.Outcome == rollout.ApprovalUnmet {
		why = fmt.Sprintf("approval of wave %s %s", wave.Name, ws.Message)
		if len(ws.Approval.Unresolved) > 0 {
			why += " (" + strings.Join(ws.Approval.Unresolved, "; ") + ")"
		}
	}
	if a.OnTimeout == rollout.OnTimeoutReject {
		ws.State = rollout.StatePending
		cause := rollout.CauseApprovalExpired
		if ws.Approval.Outcome == rollout.ApprovalUnmet {
			cause = rollout.CauseApprovalUnmet
		}
		s.fail(now, cause, why)
		return
	}
	r.Kept = slices.Clone(ws.Approval.Votes)
	c := rollout.Control{Action: string(ControlPause), By: "fleetwave", At: now, Reason: why + "; resume to ask again"}
	r.Status.Controls = append(r.Status.Controls, c)
	if r.Status.State != rollout.StatePaused {
		r.ResumeState = rollout.StateApproval
		s.setState(rollout.StatePaused)
	}
	ws.Message = c.Reason
	r.Details = "Paused: " + c.Reason
	s.hold(oldholdApproval)
}

func (s *oldturn) approved(now time.Time) {
	s.wave().State = rollout.StatePending
	if s.r.Stop != rollout.StopNone {
		s.stopBeforeWave(now)
		return
	}
	s.r.Pass, s.r.Waits = 1, 0
	s.policy(now)
}

func (s *oldturn) approvalHeld(now time.Time) {
	ws := s.wave()
	if ws.Approval != nil && ws.Approval.Outcome != "" {
		// Decided in the same moment the rollout stopped: still replace the buttons.
		s.note(rollout.EventApprovalDecided, ws.Name)
	}
	s.withdrawApprovals()
	s.wave().State = rollout.StatePending
	s.stopBeforeWave(now)
}

func (s *oldturn) withdrawApprovals() {
	for i := range s.r.Status.Waves {
		ws := &s.r.Status.Waves[i]
		if ws.Approval == nil || ws.Approval.Outcome != "" {
			continue
		}
		a := *ws.Approval
		a.Outcome = rollout.ApprovalWithdrawn
		ws.Approval = &a
		ws.Message = a.Summary()
		s.note(rollout.EventApprovalDecided, ws.Name)
	}
}

func (s *oldturn) woke(now time.Time) {
	r := &s.r
	switch r.Phase {
	case oldPhaseWait:
		if r.Stop != rollout.StopNone {
			s.policyHeld(now)
			return
		}
		if r.Status.State == rollout.StatePaused {
			s.hold(oldholdPolicy)
			return
		}
		r.Waits++
		s.policy(now)
	case oldPhaseApproval:
		if r.Stop != rollout.StopNone {
			s.approvalHeld(now)
			return
		}
		if a := s.approval(r.Wave); a.Outcome == "" {
			a.Outcome = rollout.ApprovalExpired
		}
		s.approvalDecided(now)
	case oldPhaseHold:
		if r.Status.State == rollout.StatePaused && r.Stop == rollout.StopNone {
			s.emit(HoldPaused{})
			return
		}
		switch r.Then {
		case oldholdBeforeWave:
			s.atWave(now)
		case oldholdPolicy:
			if r.Stop != rollout.StopNone {
				s.policyHeld(now)
				return
			}
			r.Waits++
			s.policy(now)
		case oldholdApproved:
			s.approved(now)
		case oldholdApproval:
			if r.Stop != rollout.StopNone {
				s.wave().State = rollout.StatePending
				s.stopBeforeWave(now)
				return
			}
			s.requestApproval(now)
		}
	}
}

func (s *oldturn) startWave(now time.Time) {
	r := &s.r
	if r.Stop != rollout.StopNone {
		s.stopBeforeWave(now)
		return
	}
	wave := r.Plan.Waves[r.Wave]
	s.setState(rollout.StatePromoting)
	r.Details = fmt.Sprintf("Wave %d/%d %s: %s", r.Wave+1, len(r.Plan.Waves), wave.Name, rollout.Count(len(wave.Sites), "site"))
	s.wave().State = rollout.StatePromoting
	s.note(rollout.EventWaveStarted, wave.Name)
	r.Phase = oldPhaseWave
	s.emit(RunWave{Index: r.Wave})
}

func (s *oldturn) waveEnded(e WaveEnded) {
	r := &s.r
	wave := r.Plan.Waves[r.Wave]
	ws := s.wave()
	reason := e.Failed
	switch {
	case e.Lost != "":
		// Which of its sites the wave promoted is unknown here, so the revert asks git about
		// every one of them.
		ws.State, ws.Unsettled = rollout.StateFailed, true
		ws.Message = fmt.Sprintf("wave %s ended without a verdict: %s", wave.Name, e.Lost)
		reason = ws.Message
	case e.Status != nil:
		live := *ws
		*ws = *e.Status
		if r.Watching {
			// A large wave's result is compacted; the promotions its progress reported are
			// what the watch observes against.
			ws.KeepPromotions(live)
		}
	}
	s.note(rollout.EventWaveFinished, wave.Name)
	r.Failure, r.FailCause = reason, oldwaveCause(e, ws)
	if reason == "" && ws.State == rollout.StateSucceeded && r.Watching && r.Plan.Health.WatchesRollout() && r.Stop == rollout.StopNone && r.Wave < len(r.Plan.Waves)-1 {
		s.emit(WatchSites{Index: r.Wave})
	}
	if reason != "" && r.Plan.Rollback.Automatic && r.Stop != rollout.StopRollback && r.Stop != rollout.StopWatch {
		if s.revert(e.At, rollout.RevertOrder(r.Status.Waves, r.Wave, r.Plan.Rollback.Scope), reason, oldafterWave) {
			return
		}
	}
	s.afterWave(e.At)
}

func oldwaveCause(e WaveEnded, ws *rollout.WaveStatus) string {
	switch {
	case e.Lost != "":
		return rollout.CauseWaveLost
	case e.Failed == "":
		return ""
	}
	for _, s := range ws.Sites {
		if s.Verdict == rollout.VerdictDegraded {
			return rollout.CauseWaveDegraded
		}
	}
	return rollout.CauseWaveFailed
}

func (s *oldturn) afterWave(now time.Time) {
	r := &s.r
	reason := r.Failure
	// A failure outranks a supersede: the newer commit still goes next, but this rollout
	// failed and says why.
	if reason != "" && (r.Stop == rollout.StopNone || r.Stop == rollout.StopSupersede) {
		s.fail(now, r.FailCause, reason)
		return
	}
	if r.Stop != rollout.StopNone {
		if reason != "" {
			r.Status.Reason = strings.TrimSuffix(reason+"; "+r.Status.Reason, "; ")
		}
		s.stopped(now, r.Wave)
		return
	}
	s.beforeWave(now, r.Wave+1)
}

func (s *oldturn) revert(now time.Time, sets []rollout.RevertSet, reason string, after oldAfterRevert) bool {
	if len(sets) == 0 {
		return false
	}
	r := &s.r
	r.Reverts, r.Revert, r.After, r.Failure = sets, 0, after, reason
	if r.Watching {
		s.emit(StopWatches{})
	}
	r.Phase = oldPhaseRevert
	s.setState(rollout.StateRollingBack)
	s.revertNext(now)
	return true
}

func (s *oldturn) revertNext(now time.Time) {
	r := &s.r
	if r.Revert >= len(r.Reverts) {
		r.Reverts, r.Revert = nil, 0
		if r.After == oldafterStop {
			s.stoppedFinal(now)
			return
		}
		s.afterWave(now)
		return
	}
	set := r.Reverts[r.Revert]
	r.Details = fmt.Sprintf("Reverting %s in wave %s: %s", rollout.SitesLabel(set.Sites), set.Wave, r.Failure)
	r.Late = false
	s.emit(RevertWave{Set: set, Reason: r.Failure})
}

func (s *oldturn) reverted(e Reverted) {
	r := &s.r
	set := r.Reverts[r.Revert]
	wi := slices.IndexFunc(r.Status.Waves, func(w rollout.WaveStatus) bool { return w.Name == set.Wave })
	ws := &r.Status.Waves[wi]
	ws.Sites = slices.Clone(ws.Sites)
	index := ws.SiteIndex()
	timeout := r.Plan.Health.ConvergenceTimeout
	late := r.Late
	switch {
	case e.Err != "" && late:
		r.Status.Reason = strings.TrimPrefix(r.Status.Reason+"; ", "; ") + fmt.Sprintf("second revert of wave %s failed: %s", ws.Name, e.Err)
	case e.Err != "":
		r.Status.Reason = fmt.Sprintf("revert of %s failed: %s", strings.Join(set.Sites, ", "), e.Err)
		r.Revert++
		s.revertNext(e.At)
		return
	case late:
		for _, v := range e.Sites {
			if v.Problem != "" {
				r.Status.Reason = strings.TrimPrefix(r.Status.Reason+"; ", "; ") + fmt.Sprintf("site %s not reverted: %s", v.Site, v.Problem)
			}
			if v.Revert != "" {
				applyRevert(&ws.Sites[index[v.Site]], v, "reverted (its promotion landed late)", timeout, e.At)
			}
		}
	default:
		var again []string
		for _, v := range e.Sites {
			applyRevert(&ws.Sites[index[v.Site]], v, "reverted", timeout, e.At)
			if v.Problem != "" {
				r.Status.Reason = strings.TrimPrefix(r.Status.Reason+"; ", "; ") + fmt.Sprintf("site %s not reverted: %s", v.Site, v.Problem)
			} else if v.Revert == "" {
				again = append(again, v.Site)
			}
		}
		if ws.Unsettled && len(again) > 0 {
			r.Late = true
			r.Details = fmt.Sprintf("Waiting for a promotion of wave %s that may still be in flight, to revert it too", ws.Name)
			s.emit(RevertLate{Set: rollout.RevertSet{Wave: set.Wave, Sites: again}, Reason: r.Failure})
			return
		}
	}
	s.note(rollout.EventReverted, set.Wave)
	r.Revert++
	s.revertNext(e.At)
}

func (s *oldturn) control(c rollout.Control) {
	r := &s.r
	action := ControlAction(c.Action)
	if action == ControlSupersede && (r.Stop != rollout.StopNone || r.Status.State.Done()) {
		return
	}
	r.Status.Controls = append(r.Status.Controls, c)
	forward := action
	switch action {
	case ControlPause:
		r.ResumeState = r.Status.State
		s.setState(rollout.StatePaused)
	case ControlResume:
		s.setState(r.ResumeState)
	case ControlAbort, ControlRollback, ControlSupersede:
		if r.Status.State == rollout.StatePaused {
			s.setState(r.ResumeState)
		}
		r.Stop, r.Stopper = rollout.StopCause(action), c
		// An operator's stop cuts a convergence wait short; a supersede lets the wave reach its
		// next safe point, so every site it promoted has a verdict.
		if action != ControlSupersede {
			forward = ControlAbort
		}
	}
	s.emit(ForwardControl{Action: forward})
}

func (s *oldturn) vote(e VoteCast) {
	i, err := s.r.VoteWave(e.Wave)
	if err != nil {
		return
	}
	a := s.approval(i)
	a.Add(e.Vote)
	s.r.Status.Waves[i].Message = a.Summary()
}

func (s *oldturn) stopBeforeWave(now time.Time) { s.stopped(now, s.r.Wave-1) }

func (s *oldturn) stopped(now time.Time, last int) {
	r := &s.r
	if r.Stop == rollout.StopSupersede {
		// Not a failure: every promoted site has its verdict, and the newer commit goes next.
		r.Status.Reason = strings.TrimSuffix(r.Stopper.Reason+"; "+r.Status.Reason, "; ")
		r.Status.FinishedAt = now
		s.setState(rollout.StateSuperseded)
		r.Status.Cause = rollout.CauseSuperseded
		r.Details = "Stopped: " + r.Stopper.Reason
		s.finish(rollout.StateSuperseded, r.Status.Reason)
		return
	}
	if r.Stop == rollout.StopWatch {
		s.watchStopped(now, last)
		return
	}
	how := map[rollout.StopCause]string{rollout.StopAbort: "aborted", rollout.StopRollback: "rolled back"}[r.Stop]
	reason := fmt.Sprintf("%s by %s", how, cmp.Or(r.Stopper.By, "an operator"))
	if r.Stopper.Reason != "" {
		reason += ": " + r.Stopper.Reason
	}
	if r.Stop == rollout.StopRollback && last >= 0 {
		// Break-glass: every site the rollout promoted, whatever the plan's rollback settings.
		if s.revert(now, rollout.RevertOrder(r.Status.Waves, last, rollout.ScopeAll), reason, oldafterStop) {
			return
		}
	}
	r.Failure = reason
	s.stoppedFinal(now)
}

func (s *oldturn) stoppedFinal(now time.Time) {
	r := &s.r
	reason := r.Failure
	final, cause := rollout.StateAborted, rollout.CauseAborted
	switch r.Stop {
	case rollout.StopRollback:
		final, cause = rollout.StateRolledBack, rollout.CauseRolledBack
	case rollout.StopWatch:
		final, cause = rollout.StateFailed, rollout.CauseWatchDegraded
	}
	r.Status.Cause = cause
	if r.Status.Reason != "" {
		reason += "; " + r.Status.Reason
	}
	r.Status.Reason = reason
	r.Status.FinishedAt = now
	s.setState(final)
	r.Details = "Stopped: " + reason
	s.finish(final, reason)
}

func (s *oldturn) fail(now time.Time, cause, reason string) {
	r := &s.r
	r.Status.Cause = cause
	if r.Status.Reason != "" {
		reason += "; " + r.Status.Reason
	}
	r.Status.Reason = reason
	r.Status.FinishedAt = now
	s.setState(rollout.StateFailed)
	r.Details = "Failed: " + reason
	s.finish(rollout.StateFailed, reason)
}

func (s *oldturn) succeed(now time.Time) {
	r := &s.r
	s.setState(rollout.StateSucceeded)
	r.Status.FinishedAt = now
	r.Details = fmt.Sprintf("Rolled out %s to %s", rollout.Short(r.Status.Commit), rollout.Count(len(r.Plan.Sites), "site"))
	s.finish(rollout.StateSucceeded, "")
}

func (s *oldturn) finish(st rollout.State, reason string) {
	if s.r.Watching {
		s.emit(StopWatches{})
	}
	s.r.Phase = oldPhaseDone
	s.emit(FinishRollout{State: st, Reason: reason})
}

func (s *oldturn) watchDegraded(e WatchDegraded) {
	r := &s.r
	if r.Ending() || r.Plan == nil {
		return
	}
	wi := slices.IndexFunc(r.Status.Waves, func(w rollout.WaveStatus) bool { return w.Name == e.Wave })
	if wi < 0 {
		return
	}
	ws := &r.Status.Waves[wi]
	ws.Sites = slices.Clone(ws.Sites)
	if site := ws.Site(e.Site); site != nil {
		site.Verdict, site.Message, site.UpdatedAt = rollout.VerdictDegraded, e.Message, e.At
	}
	reason := fmt.Sprintf("site %s of wave %s degraded after its wave succeeded: %s", e.Site, e.Wave, e.Message)
	if r.Status.State == rollout.StatePaused {
		s.setState(r.ResumeState)
	}
	r.Stop, r.Stopper, r.WatchWave = rollout.StopWatch, rollout.Control{Action: string(rollout.StopWatch), By: "fleetwave", At: e.At, Reason: reason}, wi
	r.Details = "Stopping: " + reason
	s.emit(ForwardControl{Action: ControlAbort})
}

func (s *oldturn) watchStopped(now time.Time, last int) {
	r := &s.r
	reason := r.Stopper.Reason
	r.Failure = reason
	if r.Plan.Rollback.Automatic {
		var sets []rollout.RevertSet
		switch scope := r.Plan.Rollback.Scope; {
		case scope == rollout.ScopeAll:
			sets = rollout.RevertOrder(r.Status.Waves, max(last, r.WatchWave), rollout.ScopeAll)
		default:
			if scope == rollout.ScopeWave && last > r.WatchWave && r.Status.Waves[last].State != rollout.StateSucceeded {
				sets = rollout.RevertOrder(r.Status.Waves, last, rollout.ScopeWave)
			}
			sets = append(sets, rollout.RevertOrder(r.Status.Waves, r.WatchWave, scope)...)
		}
		if s.revert(now, sets, reason, oldafterStop) {
			return
		}
	}
	s.stoppedFinal(now)
}

type oldWave struct {
	Rollout string
	Commit  string
	Wave    rollout.Wave
	Health  rollout.Health
	// Automatic is the plan's rollback.automatic: without it a degraded site within the
	// budget is left as it is, not reverted.
	Automatic bool
	Status    rollout.WaveStatus
	Phase     WavePhase
	// Batch is the index of the batch being promoted or converging; Batches the wave's.
	Batch    int
	Batches  [][]string
	Deadline time.Time // when the converging batch must have converged
	// Then is the phase to go back to after reverting sites within the budget, and Pending
	// the sites of the batch still applying their commits meanwhile.
	Then    WavePhase
	Pending []Expect
	Paused  bool
	Aborted bool
	// Failed lists the sites that degraded, in order; the first Budget of them were tolerated.
	Failed []string
	Budget int
	// Reason is why the wave failed, once it did.
	Reason string
	// Afresh makes a round that could not measure a site (Unknown) break its streak of failed
	// rounds, so a site that comes back is judged on what it does now (versioned by the
	// workflow: waves recorded before kept the streak).
	Afresh bool `json:",omitempty"`
	// Evidence makes the wave pass only on evidence (versioned by the workflow: waves recorded
	// before ended at BakeUntil whatever their sites' last rounds said):
	//   - the wave succeeds once its bake has passed and every watched site passed its last
	//     round (Passed); a site that has not keeps being observed every Interval until it
	//     passes or degrades, so a bake of 0 is one clean round;
	//   - health rounds go on in every wait: while later batches promote and converge, while a
	//     budgeted revert converges (RevertSites only writes the reverts; AwaitConvergence
	//     waits for them in slices of Interval), and while the wave is paused;
	//   - a gap of more than two intervals between rounds of the bake extends it (Extended).
	Evidence bool `json:",omitempty"`
	// Seen is when the wave's converged sites were last observed (a health round, or the
	// convergence of the first batch); Slice is the deadline of the convergence wait in
	// progress, shorter than Deadline when a round falls due first; Extended is how much
	// unobserved time lengthened the bake.
	Seen     time.Time
	Slice    time.Time
	Extended time.Duration
	// RevertWait lists the reverts written within the budget that the sites have not been
	// seen applying yet, and RevertDeadline when they must have.
	RevertWait     []Expect
	RevertDeadline time.Time

	// index maps site names to positions in Status.Sites; the sites and their order never
	// change, so every state NextWave returns shares it.
	index map[string]int
}

func oldNewWave(rolloutID, commit string, w rollout.Wave, h rollout.Health, automatic bool, status rollout.WaveStatus) oldWave {
	r := oldWave{Rollout: rolloutID, Commit: commit, Wave: w, Health: h, Automatic: automatic, Status: status,
		Phase: WavePromote, Batches: w.Batches(), Budget: w.MaxFailures.Allowed(len(w.Sites))}
	r.reindex()
	return r
}

func (r *oldWave) reindex() { r.index = r.Status.SiteIndex() }

func (r oldWave) Resume() WaveResume {
	return WaveResume{Phase: r.Phase, Batch: r.Batch, Deadline: r.Deadline, Then: r.Then, Pending: r.Pending,
		Paused: r.Paused, Aborted: r.Aborted, Failed: r.Failed,
		Seen: r.Seen, Extended: r.Extended, RevertWait: r.RevertWait, RevertDeadline: r.RevertDeadline}
}

func (r *oldWave) Site(name string) *rollout.SiteStatus {
	if r.index == nil {
		r.reindex()
	}
	if i, ok := r.index[name]; ok {
		return &r.Status.Sites[i]
	}
	return nil
}

func oldNextWave(r oldWave, e WaveEvent) (oldWave, WaveStep) {
	r.Status.Sites = append([]rollout.SiteStatus(nil), r.Status.Sites...) // the caller's copy stays as it was
	r.Failed = append([]string(nil), r.Failed...)
	switch e := e.(type) {
	case WaveStarted:
		r.Status.StartedAt = e.At
		return r.promoteNext(e.At)
	case WaveControl:
		return r.control(e)
	case StepFailed:
		return r.fail(e.At, e.Message)
	case StepCancelled:
		r.Aborted = true
		return r.abort(e.At)
	case BatchPromoted:
		return r.promoted(e)
	case SitesConverged:
		return r.converged(e)
	case HealthObserved:
		return r.observed(e)
	case WaveTick:
		if r.Phase == WaveBake || (r.Evidence && r.Paused && r.Phase == WavePromote) {
			return r, ObserveHealth{Sites: r.observable()}
		}
		return r, r.waiting()
	case SitesReverted:
		return r.reverted(e)
	}
	panic(fmt.Sprintf("rollout: unknown wave event %T", e))
}

func (r oldWave) control(e WaveControl) (oldWave, WaveStep) {
	switch e.Action {
	case ControlPause:
		r.Paused = true
	case ControlResume:
		r.Paused = false
	case ControlAbort, ControlSupersede:
		// A stop ends a pause, as it does the rollout's: the wave stops at its next safe
		// point, paused or not.
		r.Aborted, r.Paused = true, false
	}
	switch {
	case r.Phase == WaveDone:
		return r, nil
	case r.Phase == WavePromote:
		return r.promoteNext(e.At)
	case r.Phase == WaveBake && r.Aborted:
		return r.abort(e.At)
	case r.Phase == WaveBake && !r.Paused && r.Status.State == rollout.StatePaused:
		// Resumed after the bake: the wave may succeed now.
		return r.bakeNext(e.At)
	}
	return r, r.waiting()
}

func (r oldWave) waiting() WaveStep { return nil }

func (r oldWave) promoteNext(now time.Time) (oldWave, WaveStep) {
	r.Phase = WavePromote
	if r.Aborted {
		return r.abort(now)
	}
	if r.Batch >= len(r.Batches) {
		r.Phase = WaveBake
		r.Status.State = rollout.StateBaking
		r.Status.ConvergedAt = now
		r.Status.BakeUntil = now.Add(r.Wave.Bake)
		return r, ObserveHealth{Sites: r.observable()}
	}
	if r.Paused {
		r.Status.State = rollout.StatePaused
		return r, r.hold(now)
	}
	if r.roundDue(now) {
		// The sites of earlier batches are observed between pushes too.
		return r, ObserveHealth{Sites: r.watched()}
	}
	r.Status.State = rollout.StatePromoting
	return r, PromoteSites{Batch: r.Batch, Sites: r.Batches[r.Batch]}
}

func (r oldWave) promoted(e BatchPromoted) (oldWave, WaveStep) {
	var expect []Expect
	for _, p := range e.Sites {
		s := r.Site(p.Site)
		if s == nil {
			continue
		}
		s.Promotion, s.Promoted, s.Previous = p.Commit, p.Ours, p.Previous
		s.Verdict, s.UpdatedAt = rollout.VerdictConverging, e.At
		expect = append(expect, Expect{Site: p.Site, Commit: p.Commit})
	}
	if e.Failure != "" {
		// The sites that landed stay promoted, so the rollout's revert finds them.
		return r.fail(e.At, e.Failure)
	}
	if e.Cancelled {
		// Aborted during the push: what landed stays promoted, as an abort leaves it.
		r.Aborted = true
		return r.abort(e.At)
	}
	r.Phase = WaveConverge
	r.Status.State = rollout.StateConverging
	r.Deadline = e.At.Add(r.Health.ConvergenceTimeout)
	if r.Evidence {
		r.Pending = expect
		return r.awaitConverge(e.At)
	}
	return r, AwaitConvergence{Sites: expect, Deadline: r.Deadline}
}

func (r oldWave) converged(e SitesConverged) (oldWave, WaveStep) {
	if r.Phase == WaveReverting {
		return r.revertsConverged(e)
	}
	var degraded []string
	var pending []Expect
	// sliced: the wait ended for a health round, not at the convergence deadline.
	sliced := r.Evidence && e.TimedOut && r.Slice.Before(r.Deadline)
	for _, c := range e.Sites {
		s := r.Site(c.Site)
		if s == nil || s.Verdict != rollout.VerdictConverging {
			continue
		}
		st := c.State
		s.UpdatedAt, s.Revision = e.At, st.Revision
		if c.Converged {
			s.Verdict = rollout.VerdictHealthy
			s.Message = "applied " + rollout.Short(s.Promotion)
			if r.Evidence && r.Seen.IsZero() {
				r.Seen = e.At // observed from now on
			}
			continue
		}
		switch {
		case st.FluxFailed(s.Promotion):
			s.Message = fmt.Sprintf("flux failed to apply %s: %s", rollout.Short(s.Promotion), st.Message)
		case sliced, !e.TimedOut && e.At.Before(r.Deadline):
			// Another site ended the wait early; this one still has time.
			pending = append(pending, Expect{Site: c.Site, Commit: s.Promotion})
			continue
		case !st.Reachable:
			s.Message = fmt.Sprintf("did not converge within %s: unreachable: %s", r.Health.ConvergenceTimeout, st.Message)
		default:
			s.Message = fmt.Sprintf("did not converge within %s: applied %q, want %s", r.Health.ConvergenceTimeout, st.Revision, rollout.Short(s.Promotion))
		}
		s.Verdict = rollout.VerdictDegraded
		degraded = append(degraded, c.Site)
	}
	if r.Evidence {
		r.Pending = pending
		switch {
		case len(degraded) > 0 && len(pending) > 0:
			r.Then = WaveConverge
		case len(degraded) > 0:
			r.Then = WavePromote
			r.Batch++
		case len(pending) > 0:
			return r.awaitConverge(e.At)
		default:
			r.Batch++
			return r.promoteNext(e.At)
		}
		return r.degrade(e.At, degraded, pending)
	}
	if len(degraded) > 0 {
		r.Then = WaveConverge
		if len(pending) == 0 {
			r.Then = WavePromote
		}
		return r.degrade(e.At, degraded, pending)
	}
	if len(pending) > 0 {
		return r, AwaitConvergence{Sites: pending, Deadline: r.Deadline}
	}
	r.Batch++
	return r.promoteNext(e.At)
}

func (r oldWave) awaitConverge(now time.Time) (oldWave, WaveStep) {
	r.Phase = WaveConverge
	if r.Aborted {
		return r.abort(now)
	}
	if r.roundDue(now) {
		return r, ObserveHealth{Sites: r.watched()}
	}
	r.Slice = r.sliceEnd(now, r.Deadline)
	return r, AwaitConvergence{Sites: r.Pending, Deadline: r.Slice}
}

func (r oldWave) awaitReverts(now time.Time) (oldWave, WaveStep) {
	r.Phase = WaveReverting
	if r.Aborted {
		return r.abort(now)
	}
	if len(r.RevertWait) == 0 {
		r.RevertDeadline = time.Time{}
		return r.resume(now, r.Pending)
	}
	if r.roundDue(now) {
		return r, ObserveHealth{Sites: r.watched()}
	}
	r.Slice = r.sliceEnd(now, r.RevertDeadline)
	return r, AwaitConvergence{Sites: r.RevertWait, Deadline: r.Slice}
}

func (r oldWave) revertsConverged(e SitesConverged) (oldWave, WaveStep) {
	over := !e.At.Before(r.RevertDeadline) || (e.TimedOut && !r.Slice.Before(r.RevertDeadline))
	want := make(map[string]string, len(r.RevertWait))
	for _, x := range r.RevertWait {
		want[x.Site] = x.Commit
	}
	var wait []Expect
	for _, c := range e.Sites {
		s := r.Site(c.Site)
		commit, ok := want[c.Site]
		if s == nil || !ok {
			continue
		}
		v := Reversion{Site: c.Site, Revert: s.Revert, Converged: c.Converged, State: c.State}
		switch {
		case c.Converged, over:
		case c.State.FluxFailed(commit):
			v.Message = fmt.Sprintf("revert %s not applied: flux failed: %s", rollout.Short(s.Revert), c.State.Message)
		default:
			wait = append(wait, Expect{Site: c.Site, Commit: commit})
			continue
		}
		applyRevert(s, v, "reverted within the failure budget", r.Health.ConvergenceTimeout, e.At)
	}
	r.RevertWait = wait
	return r.awaitReverts(e.At)
}

func (r oldWave) observed(e HealthObserved) (oldWave, WaveStep) {
	if r.Evidence {
		return r.observedEvidence(e)
	}
	degraded := r.fold(e, func(s *rollout.SiteStatus) bool {
		return s.Verdict != rollout.VerdictDegraded && s.Verdict != rollout.VerdictReverted
	})
	if len(degraded) > 0 {
		r.Then = WaveBake
		return r.degrade(e.At, degraded, nil)
	}
	return r.bakeNext(e.At)
}

func (r oldWave) observedEvidence(e HealthObserved) (oldWave, WaveStep) {
	r.extend(cmp.Or(e.Started, e.At))
	r.Seen = e.At
	// Only converged sites that are not decided yet.
	degraded := r.fold(e, isWatched)
	if len(degraded) > 0 {
		if r.Phase != WaveReverting {
			r.Then = r.Phase // Reverting keeps what it goes back to
		}
		return r.degrade(e.At, degraded, r.Pending)
	}
	switch r.Phase {
	case WaveConverge:
		return r.awaitConverge(e.At)
	case WaveReverting:
		return r.awaitReverts(e.At)
	case WavePromote:
		return r.promoteNext(e.At)
	}
	return r.bakeNext(e.At)
}

func (r *oldWave) fold(e HealthObserved, observe func(*rollout.SiteStatus) bool) []string {
	var degraded []string
	for _, st := range e.States {
		s := r.Site(st.Site)
		if s == nil || !observe(s) {
			continue
		}
		s.ObserveHealth(st, s.Promotion, r.Health, e.At)
		if r.Afresh && s.Verdict == rollout.VerdictUnknown {
			s.Failures = 0
		}
		if s.Verdict == rollout.VerdictDegraded {
			degraded = append(degraded, s.Name)
		}
	}
	return degraded
}

func (r *oldWave) extend(now time.Time) {
	bake, until := r.Status.ConvergedAt, r.Status.BakeUntil
	if r.Seen.IsZero() || until.IsZero() || !r.Seen.Before(until) || now.Sub(r.Seen) <= max(2*r.Health.Interval, r.Health.Interval+TimerSlack) {
		return
	}
	from := r.Seen
	if from.Before(bake) {
		from = bake
	}
	ext := now.Sub(from) - r.Health.Interval
	if ext <= 0 {
		return
	}
	r.Extended += ext
	r.Status.BakeUntil = until.Add(ext)
	r.Status.Message = fmt.Sprintf("bake extended by %s to %s: no health round for %s", ext,
		r.Status.BakeUntil.UTC().Format(time.RFC3339), now.Sub(r.Seen))
}

func (r oldWave) bakeNext(now time.Time) (oldWave, WaveStep) {
	r.Phase = WaveBake
	if r.Aborted {
		return r.abort(now)
	}
	if now.Before(r.Status.BakeUntil) {
		r.Status.State = rollout.StateBaking
		return r, SleepUntil{At: minTime(now.Add(r.Health.Interval), r.Status.BakeUntil)}
	}
	if r.Evidence {
		if open := r.unpassed(); len(open) > 0 {
			// The bake is over, the evidence is not: observe the open sites until each passes
			// a clean round or degrades.
			r.Status.State = rollout.StateBaking
			first := r.Site(open[0])
			r.Status.Message = fmt.Sprintf("bake over; waiting for %s to pass a clean round: %s: %s", rollout.SitesLabel(open), open[0], first.Message)
			return r, SleepUntil{At: now.Add(r.Health.Interval)}
		}
	}
	if r.Paused {
		// A paused rollout holds the wave after its bake, until resumed.
		r.Status.State = rollout.StatePaused
		return r, r.hold(now)
	}
	r.Phase = WaveDone
	r.Status.State = rollout.StateSucceeded
	r.Status.FinishedAt = now
	var notes []string
	if n := r.revertedCount(); n > 0 {
		notes = append(notes, fmt.Sprintf("%s reverted within the failure budget (maxFailures %s)", rollout.Count(n, "site"), r.Wave.MaxFailures))
	}
	if r.Extended > 0 {
		notes = append(notes, fmt.Sprintf("bake extended by %s for missed health rounds", r.Extended))
	}
	if r.Evidence || len(notes) > 0 {
		// An Evidence wave's waiting message gives way; waves recorded before kept theirs.
		r.Status.Message = strings.Join(notes, "; ")
	}
	return r, FinishWave{State: rollout.StateSucceeded}
}

func (r oldWave) unpassed() []string {
	var out []string
	for _, s := range r.Status.Sites {
		if s.Watched() && !s.Passed() {
			out = append(out, s.Name)
		}
	}
	return out
}

func (r oldWave) watched() []string { return r.Status.WatchedSites() }

func (r oldWave) anyWatched() bool {
	return slices.ContainsFunc(r.Status.Sites, rollout.SiteStatus.Watched)
}

func (r oldWave) observable() []string {
	if r.Evidence {
		return r.watched()
	}
	return r.live()
}

func (r oldWave) roundDue(now time.Time) bool {
	return r.Evidence && !r.Seen.IsZero() && !now.Before(r.Seen.Add(r.Health.Interval)) && r.anyWatched()
}

func (r oldWave) sliceEnd(now, deadline time.Time) time.Time {
	if !r.Evidence || r.Seen.IsZero() || !r.anyWatched() {
		return deadline
	}
	return minTime(deadline, r.Seen.Add(r.Health.Interval))
}

func (r oldWave) hold(now time.Time) WaveStep {
	if !r.Evidence || !r.anyWatched() {
		return HoldPaused{}
	}
	if r.Seen.IsZero() {
		return HoldPaused{Until: now.Add(r.Health.Interval)}
	}
	return HoldPaused{Until: r.Seen.Add(r.Health.Interval)}
}

func (r oldWave) degrade(now time.Time, sites []string, pending []Expect) (oldWave, WaveStep) {
	r.Failed = append(r.Failed, sites...)
	if len(r.Failed) > r.Budget {
		return r.fail(now, r.degradedReason(sites))
	}
	reason := r.degradedReason(sites) + fmt.Sprintf("; within the failure budget (%d of %d)", len(r.Failed), r.Budget)
	for _, name := range sites {
		r.Site(name).Message += " (within the failure budget)"
	}
	if !r.Automatic {
		return r.resume(now, pending)
	}
	r.Phase = WaveReverting
	r.Pending = pending
	return r, RevertSites{Sites: sites, Reason: reason, WriteOnly: r.Evidence}
}

func (r oldWave) resume(now time.Time, pending []Expect) (oldWave, WaveStep) {
	if r.Evidence {
		switch r.Then {
		case WaveConverge:
			return r.awaitConverge(now)
		case WaveBake:
			return r.bakeNext(now)
		}
		return r.promoteNext(now) // the batch counter already moved on
	}
	switch r.Then {
	case WaveConverge:
		r.Phase = WaveConverge
		return r, AwaitConvergence{Sites: pending, Deadline: r.Deadline}
	case WaveBake:
		return r.bakeNext(now)
	}
	r.Batch++
	return r.promoteNext(now)
}

func (r oldWave) reverted(e SitesReverted) (oldWave, WaveStep) {
	if r.Evidence {
		// The reverts are written, not yet applied: wait for them, observing the others.
		r.RevertWait = slices.Clone(r.RevertWait)
		for _, v := range e.Sites {
			s := r.Site(v.Site)
			if s == nil {
				continue
			}
			if v.Problem != "" || v.Revert == "" {
				applyRevert(s, v, "reverted within the failure budget", r.Health.ConvergenceTimeout, e.At)
				continue
			}
			s.UpdatedAt = e.At
			s.Promoted, s.Revert, s.Verdict = true, v.Revert, rollout.VerdictReverted
			s.Message = fmt.Sprintf("revert %s written within the failure budget; waiting for the site to apply it", rollout.Short(v.Revert))
			r.RevertWait = append(r.RevertWait, Expect{Site: v.Site, Commit: cmp.Or(v.Head, v.Revert)})
		}
		r.RevertDeadline = e.At.Add(r.Health.ConvergenceTimeout)
		return r.awaitReverts(e.At)
	}
	for _, v := range e.Sites {
		if s := r.Site(v.Site); s != nil {
			applyRevert(s, v, "reverted within the failure budget", r.Health.ConvergenceTimeout, e.At)
		}
	}
	pending := r.Pending
	r.Pending = nil
	return r.resume(e.At, pending)
}

func (r oldWave) abort(now time.Time) (oldWave, WaveStep) {
	r.Phase = WaveDone
	r.Status.State = rollout.StateAborted
	r.Status.Message = "stopped by an operator"
	r.Status.FinishedAt = now
	return r, FinishWave{State: rollout.StateAborted}
}

func (r oldWave) fail(now time.Time, reason string) (oldWave, WaveStep) {
	r.Phase = WaveDone
	r.Reason = reason
	r.Status.State = rollout.StateFailed
	r.Status.Message = reason
	r.Status.FinishedAt = now
	return r, FinishWave{State: rollout.StateFailed, Reason: reason}
}

func (r oldWave) live() []string {
	out := make([]string, 0, len(r.Status.Sites))
	for _, s := range r.Status.Sites {
		if s.Verdict != rollout.VerdictReverted && s.Verdict != rollout.VerdictPending && s.Verdict != rollout.VerdictDegraded {
			out = append(out, s.Name)
		}
	}
	return out
}

func (r oldWave) revertedCount() int {
	n := 0
	for _, s := range r.Status.Sites {
		if s.Verdict == rollout.VerdictReverted {
			n++
		}
	}
	return n
}

func (r oldWave) degradedReason(sites []string) string {
	first := r.Site(sites[0])
	if len(sites) == 1 {
		return fmt.Sprintf("site %s degraded in wave %s: %s", sites[0], r.Wave.Name, first.Message)
	}
	return fmt.Sprintf("sites %s degraded in wave %s: %s: %s", strings.Join(sites, ", "), r.Wave.Name, sites[0], first.Message)
}

func (r *oldWave) WatchRound(e HealthObserved) []string {
	r.Afresh = true
	return r.fold(e, isWatched)
}
