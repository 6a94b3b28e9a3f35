package workflows

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"

	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/workflow"

	"github.com/fleetwave/fleetwave/chatops"
	"github.com/fleetwave/fleetwave/rollout"
)

// Where a vote came from (VoteInput.Via). A vote "via slack" carries the proof that a fleetwave
// server verified the Slack request it came in (its signature, the approver's Slack user ID);
// the rollout refuses it without that proof, so no other caller of the Temporal API can record
// a vote as given in Slack. Everything else is "via cli": a caller with access to the
// namespace, who names the approver (--as).
const (
	ViaSlack = rollout.ViaSlack
	ViaCLI   = rollout.ViaCLI
)

// VoteKey derives the key that proves Slack votes from the Slack signing secret, which every
// fleetwave server that takes Slack requests (and runs the workers) has.
func VoteKey(signingSecret string) []byte {
	return chatops.DeriveKey(signingSecret, "fleetwave vote proof v1")
}

// SignVote returns the vote marked as coming from Slack, with its proof for rollout id.
func SignVote(key []byte, id, action string, in VoteInput) VoteInput {
	in.Via = ViaSlack
	in.Proof = voteProof(key, id, action, in)
	return in
}

func voteProof(key []byte, id, action string, in VoteInput) string {
	m := hmac.New(sha256.New, key)
	for _, s := range []string{id, action, in.Wave, in.By, in.Via, in.Comment} {
		m.Write([]byte(strconv.Itoa(len(s)) + ":" + s + ";"))
	}
	return hex.EncodeToString(m.Sum(nil))
}

// CheckVoteOrigin refuses a vote whose via is not ViaCLI or a ViaSlack with a valid proof.
// key is nil on a worker that has no Slack signing secret: it refuses every Slack vote.
func CheckVoteOrigin(key []byte, id, action string, in VoteInput) error {
	switch in.Via {
	case ViaCLI:
		if in.Proof != "" {
			return errors.New("a vote via cli carries no proof")
		}
		return nil
	case ViaSlack:
		if len(key) == 0 {
			return errors.New("this worker cannot verify Slack votes: FLEETWAVE_SLACK_SIGNING_SECRET is not set")
		}
		if in.Wave == "" {
			// "The wave waiting for approval" changes over time: a proof must name its wave.
			return errors.New("a vote via slack names its wave")
		}
		want := voteProof(key, id, action, in)
		if !hmac.Equal([]byte(in.Proof), []byte(want)) {
			return errors.New("a vote via slack must come through the fleetwave server that verified the Slack request")
		}
		return nil
	}
	return fmt.Errorf("a vote comes via %q or %q, not %q", ViaCLI, ViaSlack, in.Via)
}

// VoteOrigins is the worker interceptor that checks every vote's origin before the rollout's
// own validator: with key from VoteKey (nil when this worker takes no Slack requests). It only
// validates, so it changes nothing in a workflow's history and replays are unaffected.
func VoteOrigins(key []byte) interceptor.WorkerInterceptor {
	return &voteOrigins{key: key}
}

type voteOrigins struct {
	interceptor.WorkerInterceptorBase
	key []byte
}

func (v *voteOrigins) InterceptWorkflow(ctx workflow.Context, next interceptor.WorkflowInboundInterceptor) interceptor.WorkflowInboundInterceptor {
	in := &voteOriginsInbound{key: v.key}
	in.Next = next
	return in
}

type voteOriginsInbound struct {
	interceptor.WorkflowInboundInterceptorBase
	key []byte
}

func (v *voteOriginsInbound) ValidateUpdate(ctx workflow.Context, in *interceptor.UpdateInput) error {
	if in.Name == UpdateApprove || in.Name == UpdateReject {
		vote, ok := voteArg(in.Args)
		if !ok {
			return errors.New("a vote takes one VoteInput")
		}
		if err := CheckVoteOrigin(v.key, workflow.GetInfo(ctx).WorkflowExecution.ID, in.Name, vote); err != nil {
			return err
		}
	}
	return v.Next.ValidateUpdate(ctx, in)
}

func voteArg(args []any) (VoteInput, bool) {
	if len(args) != 1 {
		return VoteInput{}, false
	}
	switch a := args[0].(type) {
	case VoteInput:
		return a, true
	case *VoteInput:
		return *a, a != nil
	}
	return VoteInput{}, false
}
