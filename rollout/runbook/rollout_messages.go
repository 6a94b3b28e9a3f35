package runbook

import (
	"time"

	"github.com/fleetwave/fleetwave/rollout"
)

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

// AloneChecked says whether a rollout of the fleet that started before this one still runs:
// Other names it ("" for none); Err says why nobody could tell.
type AloneChecked struct {
	At    time.Time
	Other string
	Err   string
	// CatchUp says Other is a catch-up the rollout superseded (no rollout runs): it ends at
	// its next safe point, so the rollout asks again sooner (CatchUpEvery).
	CatchUp bool `json:",omitempty"`
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
func (AloneChecked) event()      {}
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

// Effect is what the rollout's workflow does at once, in the order Next returns them, before
// the step.
type Effect interface{ effect() }

// Step is what the rollout's workflow runs until its event: the answer it feeds back to Next.
type Step interface{ step() }

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
	// CheckAlone asks whether a rollout of the fleet that started before this one still
	// runs: AloneChecked.
	CheckAlone struct{}
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

func (SetState) effect()       {}
func (WatchSites) effect()     {}
func (StopWatches) effect()    {}
func (StartThread) effect()    {}
func (PostEvent) effect()      {}
func (ForwardControl) effect() {}
func (LoadPlan) step()         {}
func (EvaluatePolicies) step() {}
func (WaitUntil) step()        {}
func (ResolveApprovers) step() {}
func (AwaitVotes) step()       {}
func (HoldPaused) step()       {}
func (CheckAlone) step()       {}
func (RunWave) step()          {}
func (RevertWave) step()       {}
func (RevertLate) step()       {}
func (FinishRollout) step()    {}
