package chatops

import (
	"context"
	"fmt"
	"strings"

	"github.com/fleetwave/fleetwave/rollout"
)

// Verbs of the slash command and the buttons; approve and reject are votes, the others the
// rollout controls of the same name.
const (
	VerbStatus   = "status"
	VerbApprove  = "approve"
	VerbReject   = "reject"
	VerbPause    = "pause"
	VerbResume   = "resume"
	VerbAbort    = "abort"
	VerbRollback = "rollback"
)

// Action is one thing a Slack user asks of a rollout.
type Action struct {
	Verb    string
	Rollout string
	// Wave is the wave a vote is for; "" means the wave waiting for approval.
	Wave string
	// User is the Slack user ID of who acts.
	User    string
	Comment string
}

// Rollouts is what the handlers need from Temporal. cmd/fleetwave implements it on the
// workflows client; Do sends the approve/reject/control Update, so the workflow's validator
// has the last word even after the checks here.
type Rollouts interface {
	Status(ctx context.Context, id string) (rollout.Status, error)
	Active(ctx context.Context) ([]Active, error)
	Do(ctx context.Context, a Action) (string, error)
}

// Active is a running rollout, as `/fleetwave status` lists it.
type Active struct {
	Rollout, Fleet, Commit, Wave, State string
}

// Groups resolves a Slack user group handle (without "@") to its members' user IDs.
type Groups interface {
	Members(ctx context.Context, handle string) ([]string, error)
}

// Button action IDs of an approval request.
const (
	ActionApprove = "fleetwave-approve"
	ActionReject  = "fleetwave-reject"
)

// buttonValue is what an approval button carries: the rollout and the wave, newline-separated
// (neither may contain a newline).
func buttonValue(rolloutID, wave string) string { return rolloutID + "\n" + wave }

func parseButtonValue(v string) (rolloutID, wave string, err error) {
	id, wave, ok := strings.Cut(v, "\n")
	if !ok || id == "" || wave == "" || strings.Contains(wave, "\n") {
		return "", "", fmt.Errorf("malformed button value %q", v)
	}
	return id, wave, nil
}
