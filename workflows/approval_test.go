package workflows

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/testsuite"

	"github.com/fleetwave/fleetwave/activities"
	"github.com/fleetwave/fleetwave/rollout"
)

// The canary is promoted at 09:00 and bakes 10m, so eu asks for approval at about 09:10.

// fakeSlack records what the workflow posts and resolves @leads to U03.
type fakeSlack struct {
	mu   sync.Mutex
	msgs []activities.NotifyInput
	fail bool
	n    int
}

func newFakeSlack(env *testsuite.TestWorkflowEnvironment) *fakeSlack {
	s := &fakeSlack{}
	var slack *activities.Slack
	env.RegisterActivity(slack)
	env.OnActivity(slack.Notify, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.NotifyInput) (activities.NotifyResult, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.fail {
			return activities.NotifyResult{}, errors.New("slack: service_unavailable")
		}
		s.msgs = append(s.msgs, in)
		s.n++
		sent := activities.NotifyResult{Channel: "C0DEPLOYS", Thread: in.Thread, TS: fmt.Sprintf("1700000000.%06d", s.n)}
		if sent.Thread == "" {
			sent.Thread = sent.TS
		}
		if in.Update != "" {
			sent.TS = in.Update
		}
		return sent, nil
	})
	env.OnActivity(slack.ResolveGroups, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.ResolveInput) (activities.ResolveResult, error) {
		if slices.Equal(in.Groups, []string{"leads"}) {
			return activities.ResolveResult{Members: []string{"U03"}, IDs: map[string]string{"leads": "S0LEADS"}}, nil
		}
		return activities.ResolveResult{Unresolved: []string{"@" + strings.Join(in.Groups, ", @") + ": no such group"}}, nil
	})
	return s
}

func (s *fakeSlack) kinds() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, m := range s.msgs {
		out = append(out, strings.TrimSpace(m.Event.Kind+" "+m.Event.Wave))
	}
	return out
}

// voteAt sends a vote at workflow time d after the start and records the answer.
type voteAnswer struct {
	accepted bool
	err      error
	result   VoteResult
}

func voteAt(env *testsuite.TestWorkflowEnvironment, d time.Duration, action string, in VoteInput) *voteAnswer {
	got := &voteAnswer{}
	if in.Via == ViaSlack && in.Proof == "" {
		// As the Slack handler of a fleetwave server sends it: naming the waiting wave (eu in
		// these plans).
		if in.Wave == "" {
			in.Wave = "eu"
		}
		in = SignVote(testVoteKey, "default-test-workflow-id", action, in)
	}
	env.RegisterDelayedCallback(func() {
		env.UpdateWorkflow(action, fmt.Sprintf("%s-%s-%s", action, in.By, d), &testsuite.TestUpdateCallback{
			OnAccept: func() { got.accepted = true },
			OnReject: func(err error) { got.err = err },
			OnComplete: func(v any, err error) {
				if err != nil {
					got.err = err
					return
				}
				got.result = v.(VoteResult)
			},
		}, in)
	}, d)
	return got
}

func approvalPlan(t *testing.T, approval string) string {
	return strings.Replace(testPlan(t, "wave", "  notify: {slack: {channel: \"#deploys\"}}\n"),
		"maxParallel: 2, bake: 30m}", "maxParallel: 2, bake: 30m, approval: "+approval+"}", 1)
}

func TestApprovalQuorumReleasesTheWave(t *testing.T) {
	env := newEnv(t)
	f := newFakeFleet(t, env, approvalPlan(t, `{approvers: [U01, U02, "@leads"], quorum: 2, timeout: 1h}`))
	slack := newFakeSlack(env)
	early := voteAt(env, 5*time.Minute, UpdateApprove, VoteInput{Wave: "eu", By: "U01", Via: "cli"})
	stranger := voteAt(env, 20*time.Minute, UpdateApprove, VoteInput{By: "U09", Via: "slack"})
	noApproval := voteAt(env, 20*time.Minute, UpdateApprove, VoteInput{Wave: "fleet", By: "U01", Via: "cli"})
	first := voteAt(env, 21*time.Minute, UpdateApprove, VoteInput{By: "U01", Via: "cli", Comment: "looks good"})
	again := voteAt(env, 22*time.Minute, UpdateApprove, VoteInput{By: "U01", Via: "slack"})
	var during rollout.Status
	env.RegisterDelayedCallback(func() {
		v, _ := env.QueryWorkflow(QueryStatus)
		_ = v.Get(&during)
	}, 23*time.Minute)
	group := voteAt(env, 25*time.Minute, UpdateApprove, VoteInput{Wave: "eu", By: "U03", Via: "slack"})

	st, err := run(t, env)
	if err != nil {
		t.Fatal(err)
	}
	for name, a := range map[string]struct {
		got  *voteAnswer
		want string
	}{
		"before the request": {early, "wave eu of rollout default-test-workflow-id is not waiting for approval yet (Pending)"},
		"not an approver":    {stranger, "U09 is not an approver of wave eu (approvers: U01, U02, @leads)"},
		"wave without one":   {noApproval, "wave fleet of rollout default-test-workflow-id needs no approval"},
		"second vote":        {again, "U01 already voted on wave eu (approved by U01 via cli: looks good)"},
	} {
		if a.got.accepted || a.got.err == nil || a.got.err.Error() != a.want {
			t.Errorf("%s: accepted %v, err %v, want refused with %q", name, a.got.accepted, a.got.err, a.want)
		}
	}
	if !first.accepted || first.result.Outcome != "" || first.result.Message != "wave eu approved by U01 via cli: looks good; waiting for approval: 1 of 2, until 2026-11-26T10:10:00Z" {
		t.Errorf("first vote: %+v %v", first, first.err)
	}
	if !group.accepted || group.result.Outcome != rollout.ApprovalApproved {
		t.Errorf("group member's vote: %+v %v", group, group.err)
	}
	if during.State != rollout.StateApproval || during.Waves[1].State != rollout.StateApproval || during.Waves[1].Approval.Approvals() != 1 {
		t.Errorf("status while waiting: %s, eu %s %+v", during.State, during.Waves[1].State, during.Waves[1].Approval)
	}
	// eu starts right after the second approval, not before.
	if eu := f.callsOf("promote")[1]; !eu.At.Equal(time.Date(2026, 11, 26, 9, 25, 0, 0, time.UTC)) {
		t.Errorf("eu promoted at %s, want 09:25", eu.At)
	}
	a := st.Waves[1].Approval
	want := &rollout.ApprovalStatus{Approvers: []string{"U01", "U02", "@leads"}, Eligible: []string{"U01", "U02", "U03"}, Quorum: 2,
		GroupIDs:    map[string]string{"leads": "S0LEADS"},
		RequestedAt: time.Date(2026, 11, 26, 9, 10, 0, 0, time.UTC), ExpiresAt: time.Date(2026, 11, 26, 10, 10, 0, 0, time.UTC),
		Votes: []rollout.Vote{
			{By: "U01", Approve: true, Via: "cli", Comment: "looks good", At: time.Date(2026, 11, 26, 9, 21, 0, 0, time.UTC)},
			{By: "U03", Approve: true, Via: "slack", At: time.Date(2026, 11, 26, 9, 25, 0, 0, time.UTC)},
		}, Outcome: rollout.ApprovalApproved}
	if diff := cmp.Diff(want, a); diff != "" {
		t.Errorf("approval (-want +got):\n%s", diff)
	}
	if st.State != rollout.StateSucceeded {
		t.Errorf("state %s: %s", st.State, st.Reason)
	}

	// The thread: header, then every event in order; the decision rewrites the request.
	kinds := slack.kinds()
	wantKinds := []string{"started", "wave-started canary", "wave-finished canary", "approval-requested eu", "approval-decided eu",
		"wave-started eu", "wave-finished eu", "wave-started fleet", "wave-finished fleet", "finished"}
	if diff := cmp.Diff(wantKinds, kinds); diff != "" {
		t.Errorf("slack events (-want +got):\n%s", diff)
	}
	for i, m := range slack.msgs {
		switch {
		case i == 0 && (m.Thread != "" || m.Channel != "#deploys"):
			t.Errorf("first post %q in %q, want a new thread in #deploys", m.Thread, m.Channel)
		case i > 0 && (m.Thread != "1700000000.000001" || m.Channel != "C0DEPLOYS"):
			t.Errorf("event %d posted to %s/%q, want the thread", i, m.Channel, m.Thread)
		}
	}
	if upd := slack.msgs[4]; upd.Update != "1700000000.000004" || upd.Status.Waves[1].Approval.Outcome != rollout.ApprovalApproved {
		t.Errorf("decision updates %q with outcome %q, want the request 1700000000.000004 approved", upd.Update, upd.Status.Waves[1].Approval.Outcome)
	}
	if last := slack.msgs[len(slack.msgs)-1]; last.Status.State != rollout.StateSucceeded {
		t.Errorf("final message shows %s", last.Status.State)
	}
}

func TestApprovalRejectStopsBeforeTheWave(t *testing.T) {
	env := newEnv(t)
	f := newFakeFleet(t, env, approvalPlan(t, `{approvers: [U01, U02], quorum: 2}`))
	newFakeSlack(env)
	voteAt(env, 15*time.Minute, UpdateApprove, VoteInput{By: "U01", Via: "slack"})
	reject := voteAt(env, 16*time.Minute, UpdateReject, VoteInput{By: "U02", Via: "slack", Comment: "not on a Thursday"})
	st, err := run(t, env)
	if err == nil {
		t.Fatal("rollout went on after a rejection")
	}
	if want := "wave eu rejected by U02 via slack: not on a Thursday"; st.Reason != want {
		t.Errorf("reason %q, want %q", st.Reason, want)
	}
	if !reject.accepted || reject.result.Outcome != rollout.ApprovalRejected {
		t.Errorf("reject: %+v", reject)
	}
	if n := len(f.callsOf("promote")); n != 1 || len(f.callsOf("revert")) != 0 {
		t.Errorf("%d promotions and %d reverts, want only the canary promoted and nothing reverted", n, len(f.callsOf("revert")))
	}
}

func TestApprovalTimeoutRejects(t *testing.T) {
	env := newEnv(t)
	f := newFakeFleet(t, env, approvalPlan(t, `{approvers: [U01, "@nobody"], timeout: 2h}`))
	newFakeSlack(env)
	st, err := run(t, env)
	if err == nil {
		t.Fatal("rollout went on without approval")
	}
	if want := "approval of wave eu expired at 2026-11-26T11:10:00Z with 0 of 1 approvals (timeout 2h0m0s)"; st.Reason != want {
		t.Errorf("reason %q, want %q", st.Reason, want)
	}
	if a := st.Waves[1].Approval; !slices.Equal(a.Eligible, []string{"U01"}) || !slices.Equal(a.Unresolved, []string{"@nobody: no such group"}) {
		t.Errorf("eligible %v, unresolved %v", a.Eligible, a.Unresolved)
	}
	if n := len(f.callsOf("promote")); n != 1 {
		t.Errorf("%d promotions, want the canary only", n)
	}
}

func TestApprovalTimeoutPausesAndResumeAsksAgain(t *testing.T) {
	env := newEnv(t)
	f := newFakeFleet(t, env, approvalPlan(t, `{approvers: [U01, U02], quorum: 2, timeout: 30m, onTimeout: pause}`))
	newFakeSlack(env)
	voteAt(env, 20*time.Minute, UpdateApprove, VoteInput{By: "U01", Via: "slack"})
	late := voteAt(env, 50*time.Minute, UpdateApprove, VoteInput{By: "U02", Via: "slack"})
	var paused rollout.Status
	env.RegisterDelayedCallback(func() {
		v, _ := env.QueryWorkflow(QueryStatus)
		_ = v.Get(&paused)
	}, 55*time.Minute)
	var resume answer
	controlAt(env, 3*time.Hour, UpdateResume, &resume)
	second := voteAt(env, 3*time.Hour+time.Minute, UpdateApprove, VoteInput{By: "U02", Via: "cli"})
	st, err := run(t, env)
	if err != nil {
		t.Fatal(err)
	}
	if late.accepted || late.err == nil || !strings.Contains(late.err.Error(), "already expired") {
		t.Errorf("vote after the timeout: %+v %v", late, late.err)
	}
	if paused.State != rollout.StatePaused || !strings.Contains(paused.Waves[1].Message, "approval of wave eu expired at 2026-11-26T09:40:00Z with 1 of 2 approvals (timeout 30m0s); resume to ask again") {
		t.Errorf("after the timeout: %s %q", paused.State, paused.Waves[1].Message)
	}
	if !resume.accepted || !second.accepted || second.result.Outcome != rollout.ApprovalApproved {
		t.Errorf("resume %+v, second vote %+v", resume, second)
	}
	// U01's approval from the first request counts in the second.
	if a := st.Waves[1].Approval; a.Approvals() != 2 || !a.RequestedAt.Equal(time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)) {
		t.Errorf("second request %+v", a)
	}
	if eu := f.callsOf("promote")[1]; !eu.At.Equal(time.Date(2026, 11, 26, 12, 1, 0, 0, time.UTC)) {
		t.Errorf("eu promoted at %s, want 12:01", eu.At)
	}
}

func TestApprovalAbortWhileWaitingWithdrawsTheRequest(t *testing.T) {
	env := newEnv(t)
	f := newFakeFleet(t, env, approvalPlan(t, `{approvers: [U01]}`))
	slack := newFakeSlack(env)
	var abort answer
	controlAt(env, 30*time.Minute, UpdateAbort, &abort)
	st := runStopped(t, env)
	if st.State != rollout.StateAborted || len(f.callsOf("promote")) != 1 || st.Waves[1].State != rollout.StatePending {
		t.Errorf("after abort: %s, %d promotions, eu %s", st.State, len(f.callsOf("promote")), st.Waves[1].State)
	}
	if a := st.Waves[1].Approval; a.Outcome != rollout.ApprovalWithdrawn || st.Waves[1].Message != "withdrawn: the rollout stopped" {
		t.Errorf("request after abort: %q %q", a.Outcome, st.Waves[1].Message)
	}
	// The request's buttons are replaced in Slack.
	if got := slack.kinds(); !slices.Contains(got, "approval-decided eu") || got[len(got)-1] != "finished" {
		t.Errorf("slack events %v", got)
	}
}

func TestApprovalCancelTellsTheThread(t *testing.T) {
	env := newEnv(t)
	newFakeFleet(t, env, approvalPlan(t, `{approvers: [U01]}`))
	slack := newFakeSlack(env)
	env.RegisterDelayedCallback(env.CancelWorkflow, 30*time.Minute)
	env.ExecuteWorkflow(Rollout, RolloutInput{Fleet: "demo", Commit: testCommit})
	if err := env.GetWorkflowError(); err == nil || !strings.Contains(err.Error(), "canceled") {
		t.Fatalf("workflow error %v, want canceled", err)
	}
	got := slack.kinds()
	if diff := cmp.Diff([]string{"approval-decided eu", "cancelled"}, got[len(got)-2:]); diff != "" {
		t.Errorf("last slack events (-want +got):\n%s", diff)
	}
	if last := slack.msgs[len(slack.msgs)-2]; last.Status.Waves[1].Approval.Outcome != rollout.ApprovalWithdrawn {
		t.Errorf("request after cancel: %+v", last.Status.Waves[1].Approval)
	}
}

func TestApprovalUnmetQuorumFailsAtOnce(t *testing.T) {
	env := newEnv(t)
	f := newFakeFleet(t, env, approvalPlan(t, `{approvers: [U01, "@ghosts"], quorum: 2}`))
	newFakeSlack(env)
	st, err := run(t, env)
	if err == nil {
		t.Fatal("rollout went on without a possible quorum")
	}
	if want := "approval of wave eu cannot be approved: 1 eligible approvers for a quorum of 2 (@ghosts: no such group)"; st.Reason != want {
		t.Errorf("reason %q, want %q", st.Reason, want)
	}
	if end := st.FinishedAt; !end.Equal(time.Date(2026, 11, 26, 9, 10, 0, 0, time.UTC)) || len(f.callsOf("promote")) != 1 {
		t.Errorf("finished at %s after %d promotions, want at once at 09:10 after the canary", end, len(f.callsOf("promote")))
	}
}

func TestApprovalThenPoliciesDecideAgain(t *testing.T) {
	env := newEnv(t)
	// Approved at 09:20, but a freeze of eu starts at 09:15: the wave waits for its end.
	f := newFakeFleet(t, env, approvalPlan(t, `{approvers: [U01]}`)+`  policies:
    freezes:
      - {name: late, start: "2026-11-26T09:15:00", duration: 1h, waves: [eu]}
`)
	newFakeSlack(env)
	voteAt(env, 20*time.Minute, UpdateApprove, VoteInput{By: "U01", Via: "cli"})
	st, err := run(t, env)
	if err != nil {
		t.Fatal(err)
	}
	if eu := f.callsOf("promote")[1]; !eu.At.Equal(time.Date(2026, 11, 26, 10, 15, 0, 0, time.UTC)) {
		t.Errorf("eu promoted at %s, want 10:15 when the freeze ends", eu.At)
	}
	if st.Waves[1].Approval.Outcome != rollout.ApprovalApproved {
		t.Errorf("approval %+v", st.Waves[1].Approval)
	}
}

func TestSlackOutageNeverBlocksTheRollout(t *testing.T) {
	env := newEnv(t)
	f := newFakeFleet(t, env, testPlan(t, "wave", "  notify: {slack: {channel: \"#deploys\"}}\n"))
	slack := newFakeSlack(env)
	slack.fail = true
	st, err := run(t, env)
	if err != nil || st.State != rollout.StateSucceeded {
		t.Fatalf("rollout with Slack down: %s %v", st.State, err)
	}
	if eu := f.callsOf("promote")[1]; !eu.At.Equal(time.Date(2026, 11, 26, 9, 10, 0, 0, time.UTC)) {
		t.Errorf("eu promoted at %s, want 09:10 as without Slack", eu.At)
	}
}

// A vote says where it came from, and only a fleetwave server that verified the Slack request
// can say Slack: the Temporal API alone cannot forge one.
func TestVoteOrigins(t *testing.T) {
	env := newEnv(t)
	newFakeFleet(t, env, approvalPlan(t, `{approvers: [U01, U02], quorum: 2, timeout: 1h}`))
	newFakeSlack(env)
	other := SignVote(testVoteKey, "rollout/demo/another", UpdateApprove, VoteInput{Wave: "eu", By: "U01"})
	wrongAction := SignVote(testVoteKey, "default-test-workflow-id", UpdateReject, VoteInput{Wave: "eu", By: "U01"})
	refused := map[string]struct {
		got  *voteAnswer
		want string
	}{
		"no proof":             {voteAt(env, 20*time.Minute, UpdateApprove, VoteInput{Wave: "eu", By: "U01", Via: "slack", Proof: "-"}), "must come through the fleetwave server"},
		"another rollout's":    {voteAt(env, 20*time.Minute+time.Second, UpdateApprove, other), "must come through the fleetwave server"},
		"proof of a rejection": {voteAt(env, 20*time.Minute+2*time.Second, UpdateApprove, wrongAction), "must come through the fleetwave server"},
		"another key":          {voteAt(env, 20*time.Minute+3*time.Second, UpdateApprove, SignVote(VoteKey("guessed"), "default-test-workflow-id", UpdateApprove, VoteInput{Wave: "eu", By: "U01"})), "must come through the fleetwave server"},
		"no via":               {voteAt(env, 20*time.Minute+4*time.Second, UpdateApprove, VoteInput{By: "U01"}), `a vote comes via "cli" or "slack", not ""`},
		"made-up via":          {voteAt(env, 20*time.Minute+5*time.Second, UpdateApprove, VoteInput{By: "U01", Via: "web"}), `not "web"`},
	}
	slackVote := voteAt(env, 21*time.Minute, UpdateApprove, VoteInput{By: "U01", Via: ViaSlack, Comment: "ok"})
	cliVote := voteAt(env, 22*time.Minute, UpdateApprove, VoteInput{By: "U02", Via: ViaCLI})
	st, err := run(t, env)
	if err != nil {
		t.Fatal(err)
	}
	for name, a := range refused {
		if a.got.accepted || a.got.err == nil || !strings.Contains(a.got.err.Error(), a.want) {
			t.Errorf("%s: accepted %v, err %v, want refused with %q", name, a.got.accepted, a.got.err, a.want)
		}
	}
	if !slackVote.accepted || !cliVote.accepted {
		t.Fatalf("signed Slack vote: %+v; CLI vote: %+v", slackVote, cliVote)
	}
	votes := st.Waves[1].Approval.Votes
	if len(votes) != 2 || votes[0].Via != ViaSlack || votes[0].By != "U01" || votes[1].Via != ViaCLI {
		t.Errorf("votes = %+v, want U01 via slack then U02 via cli", votes)
	}
}

func TestCheckVoteOrigin(t *testing.T) {
	signed := SignVote(testVoteKey, "r", UpdateApprove, VoteInput{Wave: "eu", By: "U01", Comment: "fine"})
	if err := CheckVoteOrigin(testVoteKey, "r", UpdateApprove, signed); err != nil {
		t.Errorf("signed vote refused: %v", err)
	}
	// A worker without the Slack signing secret cannot tell: it refuses, it does not trust.
	if err := CheckVoteOrigin(nil, "r", UpdateApprove, signed); err == nil || !strings.Contains(err.Error(), "FLEETWAVE_SLACK_SIGNING_SECRET is not set") {
		t.Errorf("worker without a key: %v", err)
	}
	changed := signed
	changed.Comment = "fine, ship it"
	if err := CheckVoteOrigin(testVoteKey, "r", UpdateApprove, changed); err == nil {
		t.Error("a vote changed after signing was accepted")
	}
	if err := CheckVoteOrigin(testVoteKey, "r", UpdateApprove, VoteInput{By: "U01", Via: ViaCLI, Proof: signed.Proof}); err == nil {
		t.Error("a CLI vote with a proof was accepted")
	}
	if err := CheckVoteOrigin(testVoteKey, "r", UpdateApprove, SignVote(testVoteKey, "r", UpdateApprove, VoteInput{By: "U01"})); err == nil {
		t.Error("a Slack vote without its wave was accepted: its proof would count on any wave asked later")
	}
	if VoteKey("") != nil {
		t.Error("an empty signing secret gives a key")
	}
	// Servers of different releases must derive the same key (computed with Python's hmac).
	if got := hex.EncodeToString(VoteKey("signing-secret")); got != "2d50371ff5b10619b614b0220a28009534f5a63d637479a533803cd8d6591858" {
		t.Errorf("VoteKey changed: %s", got)
	}
}

// TestApprovalReminder: with remindBefore, an open request gets one reminder in the thread
// that long before it expires; a request decided before then gets none.
func TestApprovalReminder(t *testing.T) {
	env := newEnv(t)
	newFakeFleet(t, env, approvalPlan(t, `{approvers: [U01, "@leads"], timeout: 2h, remindBefore: 30m}`))
	slack := newFakeSlack(env)
	if _, err := run(t, env); err == nil {
		t.Fatal("rollout went on without approval")
	}
	kinds := slack.kinds()
	requested := slices.Index(kinds, "approval-requested eu")
	reminded := slices.Index(kinds, "approval-reminder eu")
	decided := slices.Index(kinds, "approval-decided eu")
	if requested < 0 || reminded < requested || decided < reminded || slices.Index(kinds[reminded+1:], "approval-reminder eu") >= 0 {
		t.Fatalf("thread: %v, want one reminder between the request and its expiry", kinds)
	}
	if a := slack.msgs[reminded].Status.Waves[1].Approval; a == nil || a.Outcome != "" {
		t.Errorf("the reminder was posted with the approval %+v, want it open", a)
	}

	env = newEnv(t)
	newFakeFleet(t, env, approvalPlan(t, `{approvers: [U01], timeout: 2h, remindBefore: 30m}`))
	slack = newFakeSlack(env)
	voteAt(env, 20*time.Minute, UpdateApprove, VoteInput{Wave: "eu", By: "U01", Via: "cli"})
	if _, err := run(t, env); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(slack.kinds(), "approval-reminder eu") {
		t.Errorf("a decided request got a reminder: %v", slack.kinds())
	}
}

// TestApprovalViaSlackOnly: a wave whose approval says via: [slack] refuses CLI votes (their
// approver is whoever the caller names) before they reach the history, and takes the signed
// Slack vote.
func TestApprovalViaSlackOnly(t *testing.T) {
	env := newEnv(t)
	newFakeFleet(t, env, approvalPlan(t, `{approvers: [U01, U02], quorum: 1, timeout: 1h, via: [slack]}`))
	newFakeSlack(env)
	cliVote := voteAt(env, 20*time.Minute, UpdateApprove, VoteInput{By: "U02", Via: ViaCLI})
	slackVote := voteAt(env, 21*time.Minute, UpdateApprove, VoteInput{By: "U01", Via: ViaSlack})
	st, err := run(t, env)
	if err != nil {
		t.Fatal(err)
	}
	if cliVote.accepted || cliVote.err == nil || !strings.Contains(cliVote.err.Error(), "wave eu takes votes via slack only (approval.via), not via cli") {
		t.Errorf("CLI vote: accepted %v, err %v; want refused", cliVote.accepted, cliVote.err)
	}
	if !slackVote.accepted {
		t.Fatalf("Slack vote: %+v", slackVote)
	}
	if a := st.Waves[1].Approval; len(a.Votes) != 1 || a.Votes[0].Via != ViaSlack || !slices.Equal(a.Via, []string{"slack"}) {
		t.Errorf("approval = %+v", a)
	}
}
