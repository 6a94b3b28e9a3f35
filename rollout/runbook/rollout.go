package runbook

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/fleetwave/fleetwave/rollout"
)

// This file is the runbook of a whole rollout, beside the wave's (wave.go): Rollout.Next takes
// the rollout's state and one event and returns the new state, the step to run and the effects
// to run first. The Rollout workflow runs them and feeds back what happened, so every decision
// (the gates before a wave, the approvals, a pause, an abort, a supersede, what a failed wave
// reverts, how the rollout ends) is here, pure, and table-tested.
//
// The rollout, step by step:
//
//  1. Load the plan at the commit.
//  2. Walk each wave's gates (Gates) with a cursor (Cursor): the policies' look, the approval,
//     the policies' second look after it (it may have taken hours), then the wave itself. A
//     wait of the policies sleeps on a durable timer, a deny fails the rollout; an approval
//     waits for the quorum, a rejection or the timeout (onTimeout pause holds the rollout and
//     asks again on resume).
//  3. Wherever the cursor stands there is one safe point (safe): a stop ends the rollout
//     before the cursor's wave, a pause holds it at the cursor, and resuming goes back to the
//     gate the cursor is at.
//  4. The wave runs (its own runbook, Wave.Next) as a child workflow.
//  5. A failed wave, or one that ended without a verdict, is reverted by the plan's rollback
//     scope, and the rollout fails. An operator's rollback reverts every site the rollout
//     promoted; an abort leaves them; a supersede ends the rollout at the safe point, not
//     failed, so the newer commit goes next.
//
// Controls and votes arrive while a step runs. Next applies them at once and returns only
// effects (the state, the Slack thread, the running wave); the step in progress ends early
// when Interrupted says so, and the workflow feeds back Woke.

// Phase is the step a rollout's runbook runs.
type Phase string

// Phases of a rollout.
const (
	PhaseLoad      Phase = "Load"      // loading the plan at the commit
	PhaseHold      Phase = "Hold"      // paused at the cursor, until resumed or stopped
	PhasePolicy    Phase = "Policy"    // the policies are evaluated before the wave
	PhaseWait      Phase = "Wait"      // the policies made the wave wait until a time
	PhaseApprovers Phase = "Approvers" // resolving the wave's approver groups
	PhaseApproval  Phase = "Approval"  // the wave's approval request is open
	PhaseAlone     Phase = "Alone"     // asking whether an earlier rollout of the fleet still runs
	PhaseWave      Phase = "Wave"      // the wave is running
	PhaseRevert    Phase = "Revert"    // reverting by a rollback scope or a rollback
	PhaseDone      Phase = "Done"
)

// Gate is one of the gates a wave passes, in order (Rollout.Gates).
type Gate string

// Gates of a wave.
const (
	GatePolicy   Gate = "Policy"   // the policies' look before the wave (plans with policies)
	GateApproval Gate = "Approval" // the approval request (waves that need one)
	GateRecheck  Gate = "Recheck"  // the policies' second look, after the approval
	GateAlone    Gate = "Alone"    // no earlier rollout of the fleet still runs (Rollout.Alone)
	GateRun      Gate = "Run"      // the wave itself
)

// Cursor is where the runbook stands: at gate Gate of wave Wave. Entered says the gate's step
// ran there at least once (the policies looked, the approval was asked): coming back to an
// entered gate, after a wait or a pause, asks again.
type Cursor struct {
	Wave    int
	Gate    Gate
	Entered bool `json:",omitempty"`
}

// AfterRevert is what a rollout goes on with once its revert is done.
type AfterRevert string

// What comes after a revert.
const (
	afterWave AfterRevert = "wave" // end after a failed wave
	afterStop AfterRevert = "stop" // end an operator's rollback, or the watch's failure
)

// Reverting is the revert in progress: the sets to revert in order, the index of the current
// one, and what comes after. Late is true while an unsettled wave's sites are reverted a
// second time.
type Reverting struct {
	Sets []rollout.RevertSet
	Next int
	Then AfterRevert
	Late bool `json:",omitempty"`
}

// Rollout is a rollout's state in Next.
type Rollout struct {
	Status rollout.Status
	// Plan is the plan at the commit, once loaded; Author and Message describe the commit
	// for the policies, and Policies says whether the plan or its Rego files have any.
	Plan     *rollout.Plan `json:",omitempty"`
	Author   string
	Message  string
	Policies bool

	// Phase is the step in progress, At the gate it serves; Waits counts the policies'
	// waits in a row at that gate.
	Phase Phase
	At    Cursor
	Waits int
	// ResumeState is the state a paused rollout resumes to.
	ResumeState rollout.State
	// Stop says why the rollout stops early, once an operator (or a newer commit) asked;
	// Stopper is that control.
	Stop    rollout.StopCause
	Stopper rollout.Control
	// Kept are the votes of an approval request that expired under onTimeout pause, carried
	// to the request made on resume.
	Kept []rollout.Vote
	// Failure is why the rollout fails once its revert is done, FailCause its code
	// (Status.Cause) once a wave failed; Revert is the revert in progress.
	Failure   string
	FailCause string `json:",omitempty"`
	Revert    Reverting
	// Watching: the sites of every wave that succeeded stay observed until the rollout ends
	// (plan health.watch: rollout), each wave by a watch of its own (versioned by the
	// workflow: rollouts recorded before watched nothing once a wave ended). WatchWave is the
	// wave where the watch saw a site degrade (Stop is StopWatch then).
	Watching  bool `json:",omitempty"`
	WatchWave int  `json:",omitempty"`
	// Alone: before each wave runs, the rollout waits until no rollout of its fleet that
	// started before it still runs, so that one rollout promotes at a time whatever happened
	// to the fleet's coordinator (versioned by the workflow).
	Alone bool `json:",omitempty"`
	// CatchUp, when set, is the one site this rollout promotes: a catch-up of a site Deferred
	// by a rollout that succeeded (see catchup.go). The plan is cut to that site's wave and
	// the site alone (rollout.Plan.CatchUp), and GateAlone waits for every rollout of the
	// fleet that runs, whenever it started: a newer rollout supersedes a catch-up.
	CatchUp string `json:",omitempty"`
}

// AloneEvery is how often a rollout asks again whether an earlier rollout of its fleet still
// runs.
const AloneEvery = 30 * time.Second

// CatchUpEvery is how often a rollout asks again whether a catch-up it superseded has ended.
const CatchUpEvery = 2 * time.Second

// MaxPolicyWaits bounds how often the policies may make one wave wait: settings that can never
// all hold at once (a daily freeze over the business hours) deny instead of waiting forever.
const MaxPolicyWaits = 100

// NewRollout returns the state of a rollout about to start.
func NewRollout(id, fleet, commit string) Rollout {
	return Rollout{Status: rollout.Status{Rollout: id, Fleet: fleet, Commit: commit}, Phase: PhaseLoad}
}

// Gates lists the gates of wave i, in the order the cursor walks them: the policies' look
// when the plan has policies; the approval, then the policies' second look, when the wave
// needs an approval; the wave itself.
func (r Rollout) Gates(i int) []Gate {
	gates := make([]Gate, 0, 4)
	approval := r.Plan.Waves[i].Approval != nil
	if r.Policies {
		gates = append(gates, GatePolicy)
	}
	if approval {
		gates = append(gates, GateApproval)
	}
	if approval && r.Policies {
		gates = append(gates, GateRecheck)
	}
	if r.Alone {
		gates = append(gates, GateAlone)
	}
	return append(gates, GateRun)
}

// turn is one call of Next: the state it builds, the effects and the step it returns.
type turn struct {
	r       Rollout
	effects []Effect
	step    Step
}

func (s *turn) emit(e ...Effect) { s.effects = append(s.effects, e...) }

// run sets the step Next returns; the runbook asks for at most one per event.
func (s *turn) run(c Step) {
	if s.step != nil {
		panic(fmt.Sprintf("rollout: a second step %T after %T", c, s.step))
	}
	s.step = c
}

func (s *turn) setState(st rollout.State) {
	s.r.Status.State = st
	s.emit(SetState{State: st, Wave: s.r.Status.Wave})
}

func (s *turn) note(kind, wave string) {
	s.emit(PostEvent{Event: rollout.Event{Kind: kind, Wave: wave}})
}

// Next folds one event into the rollout's state and returns the new state, the step to run
// (nil: the step in progress goes on) and the effects to run first, in order. Controls, votes
// and progress reports return effects only; the step in progress goes on, or ends early when
// Interrupted says so. Next is pure and never changes the state it is given.
func (r Rollout) Next(e Event) (Rollout, Step, []Effect) {
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
		s.run(LoadPlan{})
	case PlanLoaded:
		s.loaded(e)
	case StepFailed:
		s.failed(e)
	case PolicyDecided:
		s.decided(e)
	case ApproversResolved:
		s.resolved(e)
	case AloneChecked:
		s.aloneChecked(e)
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
	return s.r, s.step, s.effects
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
	case AloneChecked:
		return []Phase{PhaseAlone}, true
	case Woke:
		return []Phase{PhaseWait, PhaseApproval, PhaseHold}, true
	case WaveEnded:
		return []Phase{PhaseWave}, true
	case Reverted:
		return []Phase{PhaseRevert}, true
	}
	return nil, false
}

func (s *turn) wave() *rollout.WaveStatus { return &s.r.Status.Waves[s.r.At.Wave] }

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
	if r.CatchUp != "" {
		plan, err := e.Plan.CatchUp(r.CatchUp)
		if err != nil {
			r.Plan = e.Plan
			s.fail(e.At, rollout.CauseLoadFailed, fmt.Sprintf("catch-up of %s at %s: %v", r.CatchUp, rollout.Short(e.Commit), err))
			return
		}
		e.Plan = plan
	}
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
		s.fail(e.At, rollout.CausePolicyFailed, fmt.Sprintf("policy check before wave %s: %s", s.r.Plan.Waves[s.r.At.Wave].Name, e.Message))
	default:
		s.fail(e.At, rollout.CauseStepFailed, e.Message)
	}
}

// The gates, walked by the cursor.

// beforeWave puts the cursor at the first gate of wave i (or ends the rollout after the last
// wave), at the safe point.
func (s *turn) beforeWave(now time.Time, i int) {
	r := &s.r
	if i == len(r.Plan.Waves) {
		r.At.Wave, r.Waits = i, 0
		s.succeed(now)
		return
	}
	r.At, r.Waits = Cursor{Wave: i, Gate: r.Gates(i)[0]}, 0
	s.at(now)
}

// pass moves the cursor past the gate it is at, to the wave's next one, at the safe point.
func (s *turn) pass(now time.Time) {
	r := &s.r
	gates := r.Gates(r.At.Wave)
	next := gates[slices.Index(gates, r.At.Gate)+1]
	r.At, r.Waits = Cursor{Wave: r.At.Wave, Gate: next}, 0
	s.at(now)
}

// at is the safe point at the cursor, then the gate's step.
func (s *turn) at(now time.Time) {
	if s.safe(now) {
		s.enter(now)
	}
}

// safe is the one safe point, wherever the cursor stands: a stop ends the rollout before the
// cursor's wave (stopAt), a pause holds the rollout at the cursor until resumed; it reports
// whether the runbook may go on.
func (s *turn) safe(now time.Time) bool {
	switch {
	case s.r.Stop != rollout.StopNone:
		s.stopAt(now)
		return false
	case s.r.Status.State == rollout.StatePaused:
		s.hold()
		return false
	}
	return true
}

// enter runs the step of the gate at the cursor.
func (s *turn) enter(now time.Time) {
	r := &s.r
	r.Status.Wave = r.Plan.Waves[r.At.Wave].Name
	switch r.At.Gate {
	case GatePolicy, GateRecheck:
		if r.At.Entered {
			r.Waits++ // asked again: after a wait, or a pause
		}
		r.At.Entered = true
		r.Phase = PhasePolicy
		s.run(EvaluatePolicies{Wave: r.At.Wave, Input: r.PolicyInput(r.At.Wave, now), MinSoak: r.Plan.MinSoakFor(r.Plan.Waves[r.At.Wave])})
	case GateApproval:
		if a := s.wave().Approval; r.At.Entered && a != nil && a.Outcome == rollout.ApprovalApproved {
			// Approved (and held by a pause since): on to the policies' second look.
			s.wave().State = rollout.StatePending
			s.pass(now)
			return
		}
		if !r.At.Entered {
			r.Kept = nil
		}
		r.At.Entered = true
		s.requestApproval(now)
	case GateAlone:
		r.At.Entered = true
		r.Phase = PhaseAlone
		s.run(CheckAlone{})
	case GateRun:
		s.startWave(now)
	}
}

// aloneChecked goes on once the runbook knows whether an earlier rollout of the fleet still
// runs: then, or when it cannot tell, the wave waits and asks again (fail closed).
func (s *turn) aloneChecked(e AloneChecked) {
	if s.r.Stop == rollout.StopNone && (e.Other != "" || e.Err != "") {
		msg := fmt.Sprintf("waiting for rollout %s of the fleet to end: one rollout promotes at a time", e.Other)
		every := AloneEvery
		switch {
		case e.Other == "":
			msg = "cannot tell whether another rollout of the fleet promotes (" + e.Err + "): asking again"
		case e.CatchUp:
			msg = fmt.Sprintf("waiting for catch-up %s to end: this rollout supersedes it, one writer per site branch", e.Other)
			every = CatchUpEvery
		}
		s.waitAt(e.At.Add(every), msg)
		return
	}
	s.passAt(e.At)
}

// waitAt makes the wave wait at its gate until the time, saying why; the gate asks again then.
func (s *turn) waitAt(until time.Time, msg string) {
	ws := s.wave()
	ws.State, ws.Message = rollout.StateWaiting, msg
	if s.r.Status.State != rollout.StatePaused {
		s.setState(rollout.StateWaiting)
	}
	s.r.Phase = PhaseWait
	s.run(WaitUntil{At: until})
}

// passAt passes the gate that answered yes, at the safe point: a stop or a pause that came while
// it was asked takes effect first (after a pause, the gate asks again on resume).
func (s *turn) passAt(now time.Time) {
	if !s.safe(now) {
		return
	}
	ws := s.wave()
	ws.State, ws.Message = rollout.StatePending, ""
	s.pass(now)
}

// stopAt ends a stopped rollout at the cursor, before its wave, putting the wave back as it
// was before its gates: the policies' verdict or an expired request no longer holds it.
func (s *turn) stopAt(now time.Time) {
	ws := s.wave()
	switch at := s.r.At; {
	case !at.Entered:
	case at.Gate == GatePolicy || at.Gate == GateRecheck || at.Gate == GateAlone:
		ws.State, ws.Message = rollout.StatePending, ""
	case at.Gate == GateApproval:
		ws.State = rollout.StatePending
	}
	s.stopBeforeWave(now)
}

func (s *turn) hold() {
	s.r.Phase = PhaseHold
	s.run(HoldPaused{})
}

func (s *turn) decided(e PolicyDecided) {
	r := &s.r
	wave := r.Plan.Waves[r.At.Wave]
	ws := s.wave()
	d := e.Decision
	ws.Policy = &d
	if r.Stop == rollout.StopNone {
		if d.Outcome == rollout.PolicyWait && r.Waits >= MaxPolicyWaits {
			d.Outcome, d.Deny = rollout.PolicyDeny, []string{fmt.Sprintf("the policies made wave %s wait %d times in a row without letting it start (last: %s)",
				wave.Name, r.Waits, strings.Join(d.Reasons, "; "))}
		}
		switch d.Outcome {
		case rollout.PolicyDeny:
			ws.State = rollout.StatePending
			ws.Message = "denied by policy: " + strings.Join(d.Deny, "; ")
			s.fail(e.At, rollout.CausePolicyDenied, fmt.Sprintf("policy denied wave %s: %s", wave.Name, strings.Join(d.Deny, "; ")))
			return
		case rollout.PolicyWait:
			s.waitAt(d.WaitUntil, fmt.Sprintf("waiting until %s: %s", d.WaitUntil.UTC().Format(time.RFC3339), strings.Join(d.Reasons, "; ")))
			return
		}
	}
	s.passAt(e.At) // allowed
}

func (s *turn) requestApproval(now time.Time) {
	a := s.r.Plan.Waves[s.r.At.Wave].Approval
	if groups := a.Groups(); len(groups) > 0 {
		s.r.Phase = PhaseApprovers
		s.run(ResolveApprovers{Groups: groups})
		return
	}
	s.resolved(ApproversResolved{At: now})
}

// resolved opens the wave's approval request to the plan's users and the groups' members. A
// group that could not be resolved adds nobody: fail closed.
func (s *turn) resolved(e ApproversResolved) {
	r := &s.r
	wave := r.Plan.Waves[r.At.Wave]
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
		GroupIDs: ids, Quorum: a.Quorum, RequestedAt: e.At, ExpiresAt: e.At.Add(a.Timeout), Via: a.Via}
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
	s.note(rollout.EventApprovalRequested, wave.Name)
	if ws.Approval.Outcome == "" {
		r.Phase = PhaseApproval
		wait := AwaitVotes{Timeout: a.Timeout}
		if a.RemindBefore > 0 {
			wait.Remind = ws.Approval.ExpiresAt.Add(-a.RemindBefore)
			wait.Reminder = rollout.Event{Kind: rollout.EventApprovalReminder, Wave: wave.Name}
		}
		s.run(wait)
		return
	}
	s.approvalDecided(e.At)
}

// approvalDecided goes on once the request is decided: approved, rejected, expired or unmet.
func (s *turn) approvalDecided(now time.Time) {
	r := &s.r
	wave := r.Plan.Waves[r.At.Wave]
	a := wave.Approval
	ws := s.wave()
	ws.Message = ws.Approval.Summary()
	s.note(rollout.EventApprovalDecided, wave.Name)
	switch ws.Approval.Outcome {
	case rollout.ApprovalApproved:
		s.at(now) // the gate passes at its safe point
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
	// onTimeout pause: the runbook pauses itself at the gate and asks again on resume.
	r.Kept = slices.Clone(ws.Approval.Votes)
	c := rollout.Control{Action: string(ControlPause), By: "fleetwave", At: now, Reason: why + "; resume to ask again"}
	r.Status.Controls = append(r.Status.Controls, c)
	if r.Status.State != rollout.StatePaused {
		r.ResumeState = rollout.StateApproval
		s.setState(rollout.StatePaused)
	}
	ws.Message = c.Reason
	s.hold()
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
		s.at(now) // the policies are asked again
	case PhaseApproval:
		if r.Stop != rollout.StopNone {
			s.approvalHeld(now)
			return
		}
		if a := s.approval(r.At.Wave); a.Outcome == "" {
			a.Outcome = rollout.ApprovalExpired
		}
		s.approvalDecided(now)
	case PhaseHold:
		if r.Status.State == rollout.StatePaused && r.Stop == rollout.StopNone {
			s.hold()
			return
		}
		s.at(now)
	}
}

// startWave runs the wave at the cursor.
func (s *turn) startWave(now time.Time) {
	r := &s.r
	wave := r.Plan.Waves[r.At.Wave]
	s.setState(rollout.StatePromoting)
	s.wave().State = rollout.StatePromoting
	s.note(rollout.EventWaveStarted, wave.Name)
	r.Phase = PhaseWave
	s.run(RunWave{Index: r.At.Wave})
}

// waveEnded takes the wave's verdict: a failed wave (or one that ended without a verdict) is
// reverted by the plan's rollback scope, and the rollout fails; otherwise the next wave comes.
func (s *turn) waveEnded(e WaveEnded) {
	r := &s.r
	wave := r.Plan.Waves[r.At.Wave]
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
	if reason == "" && ws.State == rollout.StateSucceeded && r.Watching && r.Plan.Health.WatchesRollout() && r.Stop == rollout.StopNone && r.At.Wave < len(r.Plan.Waves)-1 {
		s.emit(WatchSites{Index: r.At.Wave})
	}
	if reason != "" && r.Plan.Rollback.Automatic && r.Stop != rollout.StopRollback && r.Stop != rollout.StopWatch {
		if s.revert(e.At, rollout.RevertOrder(r.Status.Waves, r.At.Wave, r.Plan.Rollback.Scope), reason, afterWave) {
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
		s.stopped(now, r.At.Wave)
		return
	}
	s.beforeWave(now, r.At.Wave+1)
}

// revert starts reverting the sets in order, then goes on with after; it returns false when
// there is nothing to revert. No policy or pause holds a revert back.
func (s *turn) revert(now time.Time, sets []rollout.RevertSet, reason string, after AfterRevert) bool {
	if len(sets) == 0 {
		return false
	}
	r := &s.r
	r.Revert, r.Failure = Reverting{Sets: sets, Then: after}, reason
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
	if r.Revert.Next >= len(r.Revert.Sets) {
		then := r.Revert.Then
		r.Revert = Reverting{}
		if then == afterStop {
			s.stoppedFinal(now)
			return
		}
		s.afterWave(now)
		return
	}
	set := r.Revert.Sets[r.Revert.Next]
	r.Revert.Late = false
	s.run(RevertWave{Set: set, Reason: r.Failure})
}

// reverted records what the revert in progress did. In a wave that ended without a verdict,
// the sites where git held no promotion of the rollout are reverted again once a promotion
// still in flight can no longer land.
func (s *turn) reverted(e Reverted) {
	r := &s.r
	set := r.Revert.Sets[r.Revert.Next]
	wi := slices.IndexFunc(r.Status.Waves, func(w rollout.WaveStatus) bool { return w.Name == set.Wave })
	ws := &r.Status.Waves[wi]
	ws.Sites = slices.Clone(ws.Sites)
	index := ws.SiteIndex()
	timeout := r.Plan.Health.ConvergenceTimeout
	late := r.Revert.Late
	switch {
	case e.Err != "" && late:
		r.Status.Reason = strings.TrimPrefix(r.Status.Reason+"; ", "; ") + fmt.Sprintf("second revert of wave %s failed: %s", ws.Name, e.Err)
	case e.Err != "":
		r.Status.Reason = fmt.Sprintf("revert of %s failed: %s", strings.Join(set.Sites, ", "), e.Err)
		r.Revert.Next++
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
			r.Revert.Late = true
			s.run(RevertLate{Set: rollout.RevertSet{Wave: set.Wave, Sites: again}, Reason: r.Failure})
			return
		}
	}
	s.note(rollout.EventReverted, set.Wave)
	r.Revert.Next++
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
func (s *turn) stopBeforeWave(now time.Time) { s.stopped(now, s.r.At.Wave-1) }

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
	s.finish(rollout.StateFailed, reason)
}

func (s *turn) succeed(now time.Time) {
	r := &s.r
	s.setState(rollout.StateSucceeded)
	r.Status.FinishedAt = now
	// Succeeded without its Deferred sites, if any: the Reason says so.
	r.Status.Reason = r.Status.DeferredNote()
	s.finish(rollout.StateSucceeded, "")
}

func (s *turn) finish(st rollout.State, reason string) {
	if s.r.Watching {
		s.emit(StopWatches{})
	}
	s.r.Phase = PhaseDone
	s.run(FinishRollout{State: st, Reason: reason})
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
