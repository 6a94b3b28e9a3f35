package workflows

import (
	"fmt"

	"go.temporal.io/sdk/temporal"

	"github.com/fleetwave/fleetwave/rollout"
)

// TaskQueue is the task queue of a fleet's workflows and activities unless the worker is
// given another one: "fleetwave/<fleet>". A worker is bound to one fleet repo, so each fleet
// has its own queue, and two fleets can share a Temporal namespace without one's worker taking
// the other's tasks.
func TaskQueue(fleet string) string { return "fleetwave/" + fleet }

// QueryStatus is the query that returns a rollout's (or a wave's) rollout.Status.
const QueryStatus = "status"

// Updates that control a running rollout. Each takes a ControlInput and returns a
// ControlResult; a validator refuses what does not apply (resuming a rollout that is not
// paused, anything on a rollout that is ending).
const (
	// UpdatePause holds the rollout: no new batch or wave is promoted; health checks and
	// automatic reverts go on.
	UpdatePause = "pause"
	// UpdateResume releases a paused rollout.
	UpdateResume = "resume"
	// UpdateAbort stops promoting at the next safe point and leaves promoted sites as they are.
	UpdateAbort = "abort"
	// UpdateRollback stops promoting and reverts every site the rollout promoted (break-glass).
	UpdateRollback = "rollback"
)

// Updates that vote on a wave's approval request. Each takes a VoteInput and returns a
// VoteResult; the validator refuses a vote from someone who is not an approver of the wave, on a
// wave that is not waiting for approval, a second vote by the same approver, and a vote on an
// expired request, so a refused vote never reaches history.
const (
	UpdateApprove = "approve"
	UpdateReject  = "reject"
)

// VoteInput is one approver's vote. Wave "" means the wave waiting for approval.
type VoteInput struct {
	Wave string
	// By is the approver's Slack user ID, as the plan lists approvers.
	By string
	// Via says where the vote came from: ViaSlack or ViaCLI. A Slack vote carries the Proof
	// that a fleetwave server verified its Slack request (SignVote); the rollout refuses one
	// without it.
	Via     string
	Comment string
	Proof   string `json:",omitempty"`
}

// VoteResult is where the request stands after the vote.
type VoteResult struct {
	Wave    string `json:"wave"`
	Outcome string `json:"outcome,omitempty"`
	Message string `json:"message"`
}

// signalControl carries pause/resume/abort from a rollout to its running wave.
const signalControl = "control"

// signalWaveProgress carries a wave's changes (a rollout.WaveChange) to its rollout, so the
// rollout's status query shows the wave live without the client asking the wave itself.
const signalWaveProgress = "wave-progress"

// ControlInput says who acts on a rollout and why.
type ControlInput struct {
	By     string
	Reason string
}

// ControlResult is the rollout's answer to a control update.
type ControlResult struct {
	State   rollout.State `json:"state"`
	Message string        `json:"message"`
}

// ErrTypeRolloutAborted is the application error type of a rollout an operator aborted or
// rolled back; its details carry the final rollout.Status.
const ErrTypeRolloutAborted = "RolloutAborted"

// ErrTypeWaveFailed is the application error type of a wave that ended with a degraded site;
// its details carry the wave's rollout.WaveStatus.
const ErrTypeWaveFailed = "WaveFailed"

// ErrTypeRolloutFailed is the application error type of a failed rollout; its details carry the
// final rollout.Status.
const ErrTypeRolloutFailed = "RolloutFailed"

// Search attributes shown and filterable in the Temporal UI. They must be registered on the
// namespace as Keyword (`temporal operator search-attribute create`); `fleetwave dev` does it.
var (
	AttrFleet  = temporal.NewSearchAttributeKeyKeyword("FleetwaveFleet")
	AttrCommit = temporal.NewSearchAttributeKeyKeyword("FleetwaveCommit")
	AttrWave   = temporal.NewSearchAttributeKeyKeyword("FleetwaveWave")
	AttrState  = temporal.NewSearchAttributeKeyKeyword("FleetwaveState")
)

// SearchAttributes lists every search attribute fleetwave uses, for registration.
var SearchAttributes = []string{AttrFleet.GetName(), AttrCommit.GetName(), AttrWave.GetName(), AttrState.GetName()}

// RolloutID is the workflow ID of the rollout of commit in fleet: one rollout per commit, so a
// repeated start (a redelivered webhook) finds the existing one. It names the commit by its
// first IDChars hex digits: 48 bits, so two commits of one fleet do not collide in practice
// (the fleet still checks the full hash of a rollout it finds under an ID).
func RolloutID(fleet, commit string) string {
	return fmt.Sprintf("rollout/%s/%s", fleet, commit[:min(len(commit), IDChars)])
}

// IDChars is how many hex digits of a commit a rollout ID holds.
const IDChars = 12

// legacyRolloutID is the ID of rollouts started by coordinators recorded before
// versionRolloutID12: 7 hex digits, which two commits of a busy fleet can share.
func legacyRolloutID(fleet, commit string) string {
	return fmt.Sprintf("rollout/%s/%s", fleet, rollout.Short(commit))
}

// WaveID is the workflow ID of a rollout's wave child workflow.
func WaveID(rolloutID, wave string) string {
	return rolloutID + "/" + wave
}
