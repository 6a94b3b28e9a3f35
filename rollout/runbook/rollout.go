package runbook

import (
	"github.com/fleetwave/fleetwave/rollout"

	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// This file is the runbook of a whole rollout, as data, beside the wave's (engine.go): Next
// takes the rollout's state and one event and returns the new state and the commands to run.
// The Rollout workflow runs them and feeds back what happened, so every decision (the gates
// before a wave, the approvals, a pause, an abort, a supersede, what a failed wave reverts,
// how the rollout ends) is here, pure, and table-tested.
//
// The rollout, step by step:
//
//  1. Load the plan at the commit.
//  2. Before each wave (a safe point: a pause holds here, a stop ends the rollout here):
//     evaluate the policies until they allow the wave (a wait sleeps on a durable timer, a
//     deny fails the rollout); if the wave needs approval, ask its approvers and wait for the
//     quorum, a rejection or the timeout (onTimeout pause holds the rollout and asks again on
//     resume); after an approval, evaluate the policies again, since it may have taken hours.
//  3. Run the wave (its own runbook, NextWave) as a child workflow.
//  4. A failed wave, or one that ended without a verdict, is reverted by the plan's rollback
//     scope, and the rollout fails. An operator's rollback reverts every site the rollout
//     promoted; an abort leaves them; a supersede ends the rollout at the safe point, not
//     failed, so the newer commit goes next.
//
// Controls and votes arrive while a step runs. Next applies them at once and returns only
// effects (the state, the Slack thread, the running wave); the step in progress ends early
// when Interrupted says so, and the workflow feeds back Woke.

// Phase is where a rollout's runbook stands.
type Phase string

// Phases of a rollout.
const (
	PhaseLoad      Phase = "Load"      // loading the plan at the commit
	PhaseHold      Phase = "Hold"      // paused at a safe point; Then says what comes after
	PhasePolicy    Phase = "Policy"    // the policies are evaluated before the wave
	PhaseWait      Phase = "Wait"      // the policies made the wave wait until a time
	PhaseApprovers Phase = "Approvers" // resolving the wave's approver groups
	PhaseApproval  Phase = "Approval"  // the wave's approval request is open
	PhaseWave      Phase = "Wave"      // the wave is running
	PhaseRevert    Phase = "Revert"    // reverting by a rollback scope or a rollback
	PhaseDone      Phase = "Done"
)

// Hold is what a paused rollout goes on with once resumed.
type Hold string

// Holds.
const (
	holdBeforeWave Hold = "before-wave" // the safe point before a wave
	holdPolicy     Hold = "policy"      // evaluate the policies again
	holdApproved   Hold = "approved"    // start the approved wave (after the policies' second look)
	holdApproval   Hold = "approval"    // ask for the approval again (onTimeout pause)
)

// AfterRevert is what a rollout goes on with once its revert is done.
type AfterRevert string

// What comes after a revert.
const (
	afterWave AfterRevert = "wave" // end after a failed wave
	afterStop AfterRevert = "stop" // end an operator's rollback, or the watch's failure
)

// Rollout is a rollout's state in Next.
type Rollout struct {
	Status rollout.Status
	// Plan is the plan at the commit, once loaded; Author and Message describe the commit
	// for the policies, and Policies says whether the plan or its Rego files have any.
	Plan     *rollout.Plan `json:",omitempty"`
	Author   string
	Message  string
	Policies bool

	Phase Phase
	// Wave is the index of the wave the runbook is at; Pass is 0 for the policies' look
	// before a wave's approval, 1 after it; Waits counts the policies' waits in a row.
	Wave  int
	Pass  int
	Waits int
	// Then is what a hold goes on with; After what a revert does;
	// Late is true while an unsettled wave's sites are reverted a second time.
	Then  Hold
	After AfterRevert
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

// Event is a fact the rollout's workflow observed.
type Event interface{ event() }

// Started starts the runbook.
type Started struct{ At time.Time }

// PlanLoaded is the plan at the commit. Policies is true when the commit holds Rego files.
type PlanLoaded struct {
	At       time.Time
	Plan     *rollout.Plan
	Commit   string
	Subject  string
	Author   string
	Message  string
	Policies bool
	// Simulated: the worker's sites are a simulated fleet.
	Simulated bool
}

// PolicyDecided is the policies' decision before the current wave.
type PolicyDecided struct {
	At       time.Time
	Decision rollout.PolicyDecision
}

// ApproversResolved is who may vote on the current wave: the members of its groups now, and
// their handles' Slack IDs; Unresolved says which groups could not be resolved, and why. Err
// says why none could: then only the plan's user IDs may vote (fail closed).
type ApproversResolved struct {
	At         time.Time
	Members    []string
	Unresolved []string
	IDs        map[string]string
	Err        string
}

// Woke says a waiting step ended: its timer fired, or Interrupted said it should end.
type Woke struct{ At time.Time }

// WaveEnded says the current wave's workflow ended: with its final status (Status) and, when
// it failed, why (Failed); or, when it ended without a verdict (terminated, timed out, reset),
// Lost says how, and the wave's status is what its progress reports said.
type WaveEnded struct {
	At     time.Time
	Status *rollout.WaveStatus
	Failed string
	Lost   string
}

// Reverted is what the revert in progress did; Err says why it failed as a whole.
type Reverted struct {
	At    time.Time
	Sites []Reversion
	Err   string
}

// Controlled is an operator's control (ControlPause, ControlResume, ControlAbort,
// ControlRollback), or the fleet's ControlSupersede, accepted by the workflow.
type Controlled struct{ Control rollout.Control }

// VoteCast is an accepted vote on a wave's approval ("" for the wave asked last).
type VoteCast struct {
	Wave string
	Vote rollout.Vote
}

// WaveProgressed is a change the running wave reported.
type WaveProgressed struct{ Change rollout.WaveChange }

// Cancelled says the workflow was cancelled in Temporal.
type Cancelled struct{ At time.Time }

// WatchDegraded says the watch of a wave that succeeded saw one of its sites degrade.
type WatchDegraded struct {
	At      time.Time
	Wave    string
	Site    string
	Message string
}

func (Started) event()           {}
func (PlanLoaded) event()        {}
func (PolicyDecided) event()     {}
func (ApproversResolved) event() {}
func (Woke) event()              {}
func (WaveEnded) event()         {}
func (Reverted) event()          {}
func (Controlled) event()        {}
func (VoteCast) event()          {}
func (WaveProgressed) event()    {}
func (Cancelled) event()         {}
func (WatchDegraded) event()     {}
func (StepFailed) event()        {}

// More controls, beside the wave's: a rollback (the rollout stops and reverts every site it
// promoted; its running wave is aborted) and a supersede (a newer commit goes next).
const (
	ControlRollback  ControlAction = "rollback"
	ControlSupersede ControlAction = "supersede"
)

// RolloutCommand is what the rollout's workflow must do. Next returns effects, to run at once
// and in order, then at most one step, the last: what the workflow runs until its event.
type RolloutCommand interface{ rolloutCommand() }

// Effects.
type (
	// SetState publishes the rollout's state (and current wave) as search attributes.
	SetState struct {
		State rollout.State
		Wave  string
	}
	// StartThread opens the rollout's Slack thread in the channel.
	StartThread struct{ Channel string }
	// PostEvent adds an event to the Slack thread.
	PostEvent struct{ Event rollout.Event }
	// ForwardControl passes a control on to the running wave, if any.
	ForwardControl struct{ Action ControlAction }
	// WatchSites starts the watch over the sites of wave Index, which succeeded: WatchDegraded
	// when one of them degrades.
	WatchSites struct{ Index int }
	// StopWatches ends every watch: the rollout is reverting or ending.
	StopWatches struct{}
)

// Steps.
type (
	// LoadPlan loads the plan at the commit: PlanLoaded, or StepFailed.
	LoadPlan struct{}
	// EvaluatePolicies asks the policies about wave Wave: PolicyDecided, or StepFailed.
	EvaluatePolicies struct {
		Wave    int
		Input   rollout.PolicyInput
		MinSoak time.Duration
	}
	// WaitUntil sleeps on a durable timer until At, or until Interrupted: Woke.
	WaitUntil struct{ At time.Time }
	// ResolveApprovers resolves the approval's groups to their members: ApproversResolved.
	ResolveApprovers struct{ Groups []string }
	// AwaitVotes waits Timeout for the approval to be decided, or until Interrupted: Woke.
	// Remind, when set, is when to post Reminder (an EventApprovalReminder) while it waits.
	AwaitVotes struct {
		Timeout  time.Duration
		Remind   time.Time     `json:",omitzero"`
		Reminder rollout.Event `json:",omitzero"`
	}
	// RunWave runs wave Index as a child workflow: WaveEnded.
	RunWave struct{ Index int }
	// RevertWave reverts the set's sites and waits until they applied it: Reverted.
	RevertWave struct {
		Set    rollout.RevertSet
		Reason string
	}
	// RevertLate waits until a promotion of an unsettled wave still in flight has landed or
	// can no longer land, then reverts the set again: Reverted.
	RevertLate struct {
		Set    rollout.RevertSet
		Reason string
	}
	// FinishRollout ends the workflow in State: Succeeded or Superseded end it well; Failed,
	// Aborted and RolledBack end it with an error saying Reason.
	FinishRollout struct {
		State  rollout.State
		Reason string
	}
)

func (SetState) rolloutCommand()         {}
func (WatchSites) rolloutCommand()       {}
func (StopWatches) rolloutCommand()      {}
func (StartThread) rolloutCommand()      {}
func (PostEvent) rolloutCommand()        {}
func (ForwardControl) rolloutCommand()   {}
func (LoadPlan) rolloutCommand()         {}
func (EvaluatePolicies) rolloutCommand() {}
func (WaitUntil) rolloutCommand()        {}
func (ResolveApprovers) rolloutCommand() {}
func (AwaitVotes) rolloutCommand()       {}
func (HoldPaused) rolloutCommand()       {}
func (RunWave) rolloutCommand()          {}
func (RevertWave) rolloutCommand()       {}
func (RevertLate) rolloutCommand()       {}
func (FinishRollout) rolloutCommand()    {}

// IsStep reports whether c is a step (the workflow runs it until its event) rather than an
// effect.
func IsStep(c RolloutCommand) bool {
	switch c.(type) {
	case SetState, StartThread, PostEvent, ForwardControl, WatchSites, StopWatches:
		return false
	}
	return true
}

// MaxPolicyWaits bounds how often the policies may make one wave wait: settings that can never
// all hold at once (a daily freeze over the business hours) deny instead of waiting forever.
const MaxPolicyWaits = 100

// NewRollout returns the state of a rollout about to start.
func NewRollout(id, fleet, commit string) Rollout {
	return Rollout{Status: rollout.Status{Rollout: id, Fleet: fleet, Commit: commit}, Phase: PhaseLoad}
}

// turn is one call of Next: the state it builds and the commands it returns.
type turn struct {
	r    Rollout
	cmds []RolloutCommand
}

func (s *turn) emit(c ...RolloutCommand) { s.cmds = append(s.cmds, c...) }

func (s *turn) setState(st rollout.State) {
	s.r.Status.State = st
	s.emit(SetState{State: st, Wave: s.r.Status.Wave})
}

func (s *turn) note(kind, wave string) {
	s.emit(PostEvent{Event: rollout.Event{Kind: kind, Wave: wave}})
}

// Next folds one event into the rollout's state and returns the commands to run: effects,
// then at most one step. Controls, votes and progress reports return effects only; the step
// in progress goes on, or ends early when Interrupted says so. Next is pure and never changes
// the state it is given.
func Next(r Rollout, e Event) (Rollout, []RolloutCommand) {
	r.Status.Waves = slices.Clone(r.Status.Waves)
	r.Status.Controls = slices.Clone(r.Status.Controls)
	s := &turn{r: r}
	if want, ok := awaitedIn(e); ok && !slices.Contains(want, r.Phase) {
		// The workflow fed the answer to a step the runbook did not ask for: a bug, never a
		// fact to guess about.
		panic(fmt.Sprintf("rollout: %T in phase %s, want %v", e, r.Phase, want))
	}
	switch e := e.(type) {
	case Started:
		s.r.Status.StartedAt = e.At
		s.r.Phase = PhaseLoad
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
		if s.r.Phase == PhaseWave && e.Change.Wave == s.r.Status.Wave {
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

// awaitedIn returns the phases in which e answers the step in progress; ok is false for events
// that may come at any time (controls, votes, progress, a cancellation).
func awaitedIn(e Event) (phases []Phase, ok bool) {
	switch e.(type) {
	case Started, PlanLoaded:
		return []Phase{PhaseLoad}, true
	case StepFailed:
		return []Phase{PhaseLoad, PhasePolicy}, true
	case PolicyDecided:
		return []Phase{PhasePolicy}, true
	case ApproversResolved:
		return []Phase{PhaseApprovers}, true
	case Woke:
		return []Phase{PhaseWait, PhaseApproval, PhaseHold}, true
	case WaveEnded:
		return []Phase{PhaseWave}, true
	case Reverted:
		return []Phase{PhaseRevert}, true
	}
	return nil, false
}

// Interrupted reports whether the waiting step c should end now, before its timer: a stop
// ends every wait, a resume ends a hold, a decision ends the wait for votes.
func (r Rollout) Interrupted(c RolloutCommand) bool {
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

// CheckVote returns why a vote by user on wave ("" for the wave asked last) must be refused
// at now, or nil.
func (r Rollout) CheckVote(wave, user string, now time.Time) error {
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

func (s *turn) wave() *rollout.WaveStatus { return &s.r.Status.Waves[s.r.Wave] }

// approval returns wave i's approval request, as a copy the step may change.
func (s *turn) approval(i int) *rollout.ApprovalStatus {
	ws := &s.r.Status.Waves[i]
	if ws.Approval == nil {
		return nil
	}
	a := *ws.Approval
	a.Votes = slices.Clone(a.Votes)
	ws.Approval = &a
	return &a
}

func (s *turn) loaded(e PlanLoaded) {
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

func (s *turn) failed(e StepFailed) {
	switch s.r.Phase {
	case PhaseLoad:
		s.fail(e.At, rollout.CauseLoadFailed, "load plan: "+e.Message)
	case PhasePolicy:
		s.fail(e.At, rollout.CausePolicyFailed, fmt.Sprintf("policy check before wave %s: %s", s.r.Plan.Waves[s.r.Wave].Name, e.Message))
	default:
		s.fail(e.At, rollout.CauseStepFailed, e.Message)
	}
}

// beforeWave is the safe point before wave i: a pause holds here, a stop ends the rollout here.
func (s *turn) beforeWave(now time.Time, i int) {
	r := &s.r
	r.Wave, r.Pass, r.Waits = i, 0, 0
	if i == len(r.Plan.Waves) {
		s.succeed(now)
		return
	}
	if r.Status.State == rollout.StatePaused {
		r.Details = fmt.Sprintf("Paused before wave %s: waiting for resume", r.Plan.Waves[i].Name)
		s.hold(holdBeforeWave)
		return
	}
	s.atWave(now)
}

// atWave goes on at the safe point before the current wave, not paused.
func (s *turn) atWave(now time.Time) {
	r := &s.r
	if r.Stop != rollout.StopNone {
		s.stopBeforeWave(now)
		return
	}
	r.Status.Wave = r.Plan.Waves[r.Wave].Name
	s.policy(now)
}

func (s *turn) hold(then Hold) {
	s.r.Phase, s.r.Then = PhaseHold, then
	s.emit(HoldPaused{})
}

// policy asks the policies about the current wave, unless the plan has none.
func (s *turn) policy(now time.Time) {
	r := &s.r
	if !r.Policies {
		s.policyPassed(now)
		return
	}
	r.Phase = PhasePolicy
	s.emit(EvaluatePolicies{Wave: r.Wave, Input: r.PolicyInput(r.Wave, now), MinSoak: r.Plan.MinSoakFor(r.Plan.Waves[r.Wave])})
}

// policyHeld puts the wave back as it was when the rollout stops while the policies hold it.
func (s *turn) policyHeld(now time.Time) {
	ws := s.wave()
	ws.State, ws.Message = rollout.StatePending, ""
	s.stopBeforeWave(now)
}

func (s *turn) decided(e PolicyDecided) {
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
			s.hold(holdPolicy)
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
	r.Phase = PhaseWait
	s.emit(WaitUntil{At: d.WaitUntil})
}

// policyPassed goes on after the policies allowed the current wave: to its approval on the
// first look, to the wave itself after the second (or when it needs no approval).
func (s *turn) policyPassed(now time.Time) {
	r := &s.r
	if r.Pass == 0 && r.Plan.Waves[r.Wave].Approval != nil {
		r.Kept = nil
		s.requestApproval(now)
		return
	}
	s.startWave(now)
}

func (s *turn) requestApproval(now time.Time) {
	a := s.r.Plan.Waves[s.r.Wave].Approval
	if groups := a.Groups(); len(groups) > 0 {
		s.r.Phase = PhaseApprovers
		s.emit(ResolveApprovers{Groups: groups})
		return
	}
	s.resolved(ApproversResolved{At: now})
}

// resolved opens the wave's approval request to the plan's users and the groups' members. A
// group that could not be resolved adds nobody: fail closed.
func (s *turn) resolved(e ApproversResolved) {
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
		r.Phase = PhaseApproval
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

// approvalDecided goes on once the request is decided: approved, rejected, expired or unmet.
func (s *turn) approvalDecided(now time.Time) {
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
			s.hold(holdApproved)
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
	s.hold(holdApproval)
}

// approved goes on with an approved wave: the policies look again.
func (s *turn) approved(now time.Time) {
	s.wave().State = rollout.StatePending
	if s.r.Stop != rollout.StopNone {
		s.stopBeforeWave(now)
		return
	}
	s.r.Pass, s.r.Waits = 1, 0
	s.policy(now)
}

// approvalHeld closes the request of a rollout that stopped while it was open.
func (s *turn) approvalHeld(now time.Time) {
	ws := s.wave()
	if ws.Approval != nil && ws.Approval.Outcome != "" {
		// Decided in the same moment the rollout stopped: still replace the buttons.
		s.note(rollout.EventApprovalDecided, ws.Name)
	}
	s.withdrawApprovals()
	s.wave().State = rollout.StatePending
	s.stopBeforeWave(now)
}

// withdrawApprovals closes every open approval request, so nobody can vote on it and its Slack
// buttons give way.
func (s *turn) withdrawApprovals() {
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

// woke goes on after a wait: a policy's timer, a vote or the approval's timer, a resume, or a
// stop.
func (s *turn) woke(now time.Time) {
	r := &s.r
	switch r.Phase {
	case PhaseWait:
		if r.Stop != rollout.StopNone {
			s.policyHeld(now)
			return
		}
		if r.Status.State == rollout.StatePaused {
			s.hold(holdPolicy)
			return
		}
		r.Waits++
		s.policy(now)
	case PhaseApproval:
		if r.Stop != rollout.StopNone {
			s.approvalHeld(now)
			return
		}
		if a := s.approval(r.Wave); a.Outcome == "" {
			a.Outcome = rollout.ApprovalExpired
		}
		s.approvalDecided(now)
	case PhaseHold:
		if r.Status.State == rollout.StatePaused && r.Stop == rollout.StopNone {
			s.emit(HoldPaused{})
			return
		}
		switch r.Then {
		case holdBeforeWave:
			s.atWave(now)
		case holdPolicy:
			if r.Stop != rollout.StopNone {
				s.policyHeld(now)
				return
			}
			r.Waits++
			s.policy(now)
		case holdApproved:
			s.approved(now)
		case holdApproval:
			if r.Stop != rollout.StopNone {
				s.wave().State = rollout.StatePending
				s.stopBeforeWave(now)
				return
			}
			s.requestApproval(now)
		}
	}
}

// startWave runs the current wave, unless the rollout was stopped at this safe point.
func (s *turn) startWave(now time.Time) {
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
	r.Phase = PhaseWave
	s.emit(RunWave{Index: r.Wave})
}

// waveEnded takes the wave's verdict: a failed wave (or one that ended without a verdict) is
// reverted by the plan's rollback scope, and the rollout fails; otherwise the next wave comes.
func (s *turn) waveEnded(e WaveEnded) {
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
	r.Failure, r.FailCause = reason, waveCause(e, ws)
	if reason == "" && ws.State == rollout.StateSucceeded && r.Watching && r.Plan.Health.WatchesRollout() && r.Stop == rollout.StopNone && r.Wave < len(r.Plan.Waves)-1 {
		s.emit(WatchSites{Index: r.Wave})
	}
	if reason != "" && r.Plan.Rollback.Automatic && r.Stop != rollout.StopRollback && r.Stop != rollout.StopWatch {
		if s.revert(e.At, rollout.RevertOrder(r.Status.Waves, r.Wave, r.Plan.Rollback.Scope), reason, afterWave) {
			return
		}
	}
	s.afterWave(e.At)
}

// waveCause is why a wave failed, as a cause; "" when it did not.
func waveCause(e WaveEnded, ws *rollout.WaveStatus) string {
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

// afterWave ends the rollout after a wave (and its revert), or goes on to the next wave.
func (s *turn) afterWave(now time.Time) {
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

// revert starts reverting the sets in order, then goes on with after; it returns false when
// there is nothing to revert. No policy or pause holds a revert back.
func (s *turn) revert(now time.Time, sets []rollout.RevertSet, reason string, after AfterRevert) bool {
	if len(sets) == 0 {
		return false
	}
	r := &s.r
	r.Reverts, r.Revert, r.After, r.Failure = sets, 0, after, reason
	if r.Watching {
		s.emit(StopWatches{})
	}
	r.Phase = PhaseRevert
	s.setState(rollout.StateRollingBack)
	s.revertNext(now)
	return true
}

func (s *turn) revertNext(now time.Time) {
	r := &s.r
	if r.Revert >= len(r.Reverts) {
		r.Reverts, r.Revert = nil, 0
		if r.After == afterStop {
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

// reverted records what the revert in progress did. In a wave that ended without a verdict,
// the sites where git held no promotion of the rollout are reverted again once a promotion
// still in flight can no longer land.
func (s *turn) reverted(e Reverted) {
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

// control applies an accepted control at once; it takes effect at the rollout's next safe
// point, and the running wave gets it too.
func (s *turn) control(c rollout.Control) {
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

func (s *turn) vote(e VoteCast) {
	i, err := s.r.VoteWave(e.Wave)
	if err != nil {
		return
	}
	a := s.approval(i)
	a.Add(e.Vote)
	s.r.Status.Waves[i].Message = a.Summary()
}

// stopBeforeWave ends a stopped rollout at the safe point before the current wave: the waves
// before it ran, this one did not.
func (s *turn) stopBeforeWave(now time.Time) { s.stopped(now, s.r.Wave-1) }

// stopped ends a rollout that an operator aborted or rolled back, or a newer commit
// superseded; last is the last wave that ran.
func (s *turn) stopped(now time.Time, last int) {
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
		if s.revert(now, rollout.RevertOrder(r.Status.Waves, last, rollout.ScopeAll), reason, afterStop) {
			return
		}
	}
	r.Failure = reason
	s.stoppedFinal(now)
}

func (s *turn) stoppedFinal(now time.Time) {
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

func (s *turn) fail(now time.Time, cause, reason string) {
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

func (s *turn) succeed(now time.Time) {
	r := &s.r
	s.setState(rollout.StateSucceeded)
	r.Status.FinishedAt = now
	r.Details = fmt.Sprintf("Rolled out %s to %s", rollout.Short(r.Status.Commit), rollout.Count(len(r.Plan.Sites), "site"))
	s.finish(rollout.StateSucceeded, "")
}

func (s *turn) finish(st rollout.State, reason string) {
	if s.r.Watching {
		s.emit(StopWatches{})
	}
	s.r.Phase = PhaseDone
	s.emit(FinishRollout{State: st, Reason: reason})
}

// watchDegraded stops the rollout for a site of a succeeded wave that degraded: the running
// wave is aborted, and at the next safe point (at once, between waves) the rollout reverts by
// its rollback scope with the degraded site's wave as the failed one, then fails.
func (s *turn) watchDegraded(e WatchDegraded) {
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

// watchStopped reverts what the watch's failure calls for, then fails the rollout: by the
// plan's rollback scope with the degraded site's wave as the failed wave (scope site: the
// degraded site; wave: that wave, and the wave that was running, which never passed its gate;
// all: every wave so far).
func (s *turn) watchStopped(now time.Time, last int) {
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
		if s.revert(now, sets, reason, afterStop) {
			return
		}
	}
	s.stoppedFinal(now)
}
