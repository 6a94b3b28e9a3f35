package runbook

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetwave/fleetwave/rollout"
)

// testPlan has a canary wave (site a) and a wave eu (sites b, c) that needs one approval from
// U1, U2 or a member of @sre within an hour, onTimeout as given; rollback scope all.
func testPlan(onTimeout string) *rollout.Plan {
	return &rollout.Plan{SiteBranch: "sites/{site}", Sites: []rollout.Site{{Name: "a"}, {Name: "b"}, {Name: "c"}},
		Waves: []rollout.Wave{
			{Name: "canary", Sites: []string{"a"}, MaxParallel: 1},
			{Name: "eu", Sites: []string{"b", "c"}, MaxParallel: 2,
				Approval: &rollout.Approval{Approvers: []string{"U1", "U2", "@sre"}, Quorum: 1, Timeout: time.Hour, OnTimeout: onTimeout}},
		},
		Health:   rollout.Health{ConvergenceTimeout: 5 * time.Minute},
		Rollback: rollout.Rollback{Automatic: true, Scope: rollout.ScopeAll},
	}
}

// run feeds events in order to a new rollout of the plan and returns the state and the
// commands of the last event.
func run(events ...Event) (Rollout, []any) {
	r := NewRollout("rollout/demo/abc1234", "demo", "abc1234")
	var cmds []any
	for _, e := range events {
		r, cmds = next(r, e)
	}
	return r, cmds
}

// Events of a rollout, in the order they come; each list starts from the beginning.
var (
	started      = []Event{Started{At: t0}}
	plain        = then(started, PlanLoaded{At: at(time.Second), Plan: testPlan(rollout.OnTimeoutReject), Commit: "abc1234", Subject: "bump"})
	withPolicies = then(started, PlanLoaded{At: at(time.Second), Plan: testPlan(rollout.OnTimeoutPause), Commit: "abc1234", Policies: true})
	canaryDone   = then(plain, WaveEnded{At: at(10 * time.Minute), Status: waveDone("canary", "a")})
	asking       = then(canaryDone, ApproversResolved{At: at(11 * time.Minute), Members: []string{"U3"}, IDs: map[string]string{"sre": "S1"}})
	approved     = then(asking, VoteCast{Vote: rollout.Vote{By: "U3", Approve: true, At: at(12 * time.Minute)}}, Woke{At: at(12 * time.Minute)})
	euRunning    = approved
	euFailed     = then(euRunning, WaveEnded{At: at(30 * time.Minute), Status: waveFailed("eu", "b", "c"), Failed: "site b degraded in wave eu: error-rate"})

	// With policies and onTimeout pause.
	policyAsked  = withPolicies
	policyWaits  = then(policyAsked, PolicyDecided{At: at(2 * time.Second), Decision: rollout.PolicyDecision{Outcome: rollout.PolicyWait, WaitUntil: at(time.Hour), Reasons: []string{"freeze"}}})
	pCanaryDone  = then(policyAsked, allow(time.Minute), WaveEnded{At: at(10 * time.Minute), Status: waveDone("canary", "a")})
	pAsking      = then(pCanaryDone, allow(11*time.Minute), ApproversResolved{At: at(11 * time.Minute), Members: []string{"U3"}})
	pExpired     = then(pAsking, Woke{At: at(71 * time.Minute)})
	pApproved    = then(pAsking, VoteCast{Wave: "eu", Vote: rollout.Vote{By: "U1", Approve: true}}, Woke{At: at(20 * time.Minute)})
	pausedBefore = then(plain, Controlled{Control: rollout.Control{Action: "pause", By: "U1", At: at(5 * time.Minute)}}, WaveEnded{At: at(10 * time.Minute), Status: waveDone("canary", "a")})
)

func then(events []Event, more ...Event) []Event {
	return append(slices.Clip(events), more...)
}

func allow(d time.Duration) PolicyDecided {
	return PolicyDecided{At: at(d), Decision: rollout.PolicyDecision{Outcome: rollout.PolicyAllow}}
}

func control(action ControlAction, d time.Duration) Controlled {
	return Controlled{Control: rollout.Control{Action: string(action), By: "U1", At: at(d)}}
}

func waveDone(name string, sites ...string) *rollout.WaveStatus {
	ws := &rollout.WaveStatus{Name: name, State: rollout.StateSucceeded}
	for _, s := range sites {
		ws.Sites = append(ws.Sites, rollout.SiteStatus{Name: s, Branch: "sites/" + s, Verdict: rollout.VerdictHealthy, Promoted: true, Promotion: "p-" + s})
	}
	return ws
}

func waveFailed(name string, sites ...string) *rollout.WaveStatus {
	ws := waveDone(name, sites...)
	ws.State = rollout.StateFailed
	ws.Sites[0].Verdict = rollout.VerdictDegraded
	return ws
}

// describe renders commands as short words, so that a table row reads like the runbook.
func describe(cmds []any) string {
	var out []string
	for _, c := range cmds {
		switch c := c.(type) {
		case SetState:
			out = append(out, "state "+string(c.State))
		case StartThread:
			out = append(out, "thread "+c.Channel)
		case PostEvent:
			out = append(out, strings.TrimSpace("post "+c.Event.Kind+" "+c.Event.Wave))
		case ForwardControl:
			out = append(out, "forward "+string(c.Action))
		case LoadPlan:
			out = append(out, "load")
		case EvaluatePolicies:
			out = append(out, fmt.Sprintf("policies wave %d", c.Wave))
		case WaitUntil:
			out = append(out, "wait until "+c.At.Sub(t0).String())
		case ResolveApprovers:
			out = append(out, "resolve "+strings.Join(c.Groups, ","))
		case AwaitVotes:
			out = append(out, "votes "+c.Timeout.String())
		case HoldPaused:
			out = append(out, "hold")
		case RunWave:
			out = append(out, fmt.Sprintf("run wave %d", c.Index))
		case CheckAlone:
			out = append(out, "CheckAlone")
		case RevertWave:
			out = append(out, "revert "+c.Set.Wave+":"+strings.Join(c.Set.Sites, ","))
		case RevertLate:
			out = append(out, "revert late "+c.Set.Wave+":"+strings.Join(c.Set.Sites, ","))
		case FinishRollout:
			out = append(out, strings.TrimSpace("finish "+string(c.State)+" "+c.Reason))
		case WatchSites:
			out = append(out, "WatchSites")
		case StopWatches:
			out = append(out, "StopWatches")
		default:
			out = append(out, fmt.Sprintf("%T", c))
		}
	}
	return strings.Join(out, "; ")
}

// TestNext walks every phase of the rollout runbook with every event it can get there.
func TestNext(t *testing.T) {
	tests := []struct {
		name   string
		events []Event
		want   string // describe(commands of the last event)
		phase  Phase
		state  rollout.State
		check  func(t *testing.T, r Rollout)
	}{
		// Load.
		{name: "start loads the plan", events: started, want: "state Loading; load", phase: PhaseLoad, state: rollout.StateLoading},
		{name: "a plan that cannot be loaded fails the rollout", events: then(started, StepFailed{At: at(time.Second), Message: "fleetwave.yaml:3:1: bad"}),
			want: "state Failed; finish Failed load plan: fleetwave.yaml:3:1: bad", phase: PhaseDone, state: rollout.StateFailed},
		{name: "a loaded plan without policies starts the first wave", events: plain,
			want: "state Promoting; post wave-started canary; run wave 0", phase: PhaseWave, state: rollout.StatePromoting,
			check: func(t *testing.T, r Rollout) {
				if len(r.Status.Waves) != 2 || r.Status.Subject != "bump" || r.Status.Wave != "canary" {
					t.Errorf("status = %+v", r.Status)
				}
			}},
		{name: "a loaded plan with policies asks them first", events: withPolicies, want: "policies wave 0", phase: PhasePolicy, state: rollout.StateLoading},
		{name: "a plan with a Slack channel opens the thread", events: then(started, PlanLoaded{At: at(time.Second), Plan: func() *rollout.Plan {
			p := testPlan(rollout.OnTimeoutReject)
			p.Notify.Slack = &rollout.SlackNotify{Channel: "C1"}
			return p
		}(), Commit: "abc1234"}),
			want: "thread C1; post started; state Promoting; post wave-started canary; run wave 0", phase: PhaseWave, state: rollout.StatePromoting},
		{name: "a pause while loading holds before the first wave", events: then(started, control(ControlPause, 0), PlanLoaded{At: at(time.Second), Plan: testPlan(rollout.OnTimeoutReject)}),
			want: "hold", phase: PhaseHold, state: rollout.StatePaused},
		{name: "an abort while loading ends the rollout at the first safe point", events: then(started, control(ControlAbort, 0), PlanLoaded{At: at(time.Second), Plan: testPlan(rollout.OnTimeoutReject)}),
			want: "state Aborted; finish Aborted aborted by U1", phase: PhaseDone, state: rollout.StateAborted},

		// Policy: allow, wait, deny, fail, and a stop or pause meanwhile.
		{name: "policies allow: the wave runs", events: then(policyAsked, allow(time.Minute)),
			want: "state Promoting; post wave-started canary; run wave 0", phase: PhaseWave, state: rollout.StatePromoting},
		{name: "policies deny: the rollout fails", events: then(policyAsked, PolicyDecided{At: at(time.Minute), Decision: rollout.PolicyDecision{Outcome: rollout.PolicyDeny, Deny: []string{"freeze"}}}),
			want: "state Failed; finish Failed policy denied wave canary: freeze", phase: PhaseDone, state: rollout.StateFailed},
		{name: "policies wait: a durable timer", events: policyWaits, want: "state Waiting; wait until 1h0m0s", phase: PhaseWait, state: rollout.StateWaiting,
			check: func(t *testing.T, r Rollout) {
				if ws := r.Status.Waves[0]; ws.State != rollout.StateWaiting || !strings.Contains(ws.Message, "freeze") {
					t.Errorf("wave = %s %q", ws.State, ws.Message)
				}
			}},
		{name: "a policy that cannot be evaluated fails the rollout", events: then(policyAsked, StepFailed{At: at(time.Minute), Message: "rego: boom"}),
			want: "state Failed; finish Failed policy check before wave canary: rego: boom", phase: PhaseDone, state: rollout.StateFailed},
		{name: "an abort while the policies are evaluated wins over their answer", events: then(policyAsked, control(ControlAbort, 0), allow(time.Minute)),
			want: "state Aborted; finish Aborted aborted by U1", phase: PhaseDone, state: rollout.StateAborted},
		{name: "paused while the policies allowed: hold, then ask again", events: then(policyAsked, control(ControlPause, 0), allow(time.Minute)),
			want: "hold", phase: PhaseHold, state: rollout.StatePaused},
		{name: "resumed after an allow: the policies are asked again", events: then(policyAsked, control(ControlPause, 0), allow(time.Minute), control(ControlResume, 2*time.Minute), Woke{At: at(2 * time.Minute)}),
			want: "policies wave 0", phase: PhasePolicy, state: rollout.StateLoading, check: waits(1)},
		{name: "stopped while held after an allow", events: then(policyAsked, control(ControlPause, 0), allow(time.Minute), control(ControlAbort, 2*time.Minute), Woke{At: at(2 * time.Minute)}),
			want: "state Aborted; finish Aborted aborted by U1", phase: PhaseDone, state: rollout.StateAborted},
		{name: "the wait's timer fires: the policies are asked again", events: then(policyWaits, Woke{At: at(time.Hour)}),
			want: "policies wave 0", phase: PhasePolicy, state: rollout.StateWaiting, check: waits(1)},
		{name: "a wait past MaxPolicyWaits denies", events: func() []Event {
			ev := policyAsked
			for i := 0; i < MaxPolicyWaits; i++ {
				ev = then(ev, PolicyDecided{At: at(time.Minute), Decision: rollout.PolicyDecision{Outcome: rollout.PolicyWait, WaitUntil: at(time.Hour), Reasons: []string{"freeze"}}}, Woke{At: at(time.Hour)})
			}
			return then(ev, PolicyDecided{At: at(time.Minute), Decision: rollout.PolicyDecision{Outcome: rollout.PolicyWait, WaitUntil: at(time.Hour), Reasons: []string{"freeze"}}})
		}(), want: "state Failed; finish Failed policy denied wave canary: the policies made wave canary wait 100 times in a row without letting it start (last: freeze)", phase: PhaseDone, state: rollout.StateFailed},
		{name: "an abort ends the policy wait", events: then(policyWaits, control(ControlAbort, time.Minute)),
			want: "forward abort", phase: PhaseWait, state: rollout.StateWaiting,
			check: func(t *testing.T, r Rollout) {
				if !r.Interrupted(WaitUntil{}) {
					t.Error("the wait is not interrupted by the abort")
				}
			}},
		{name: "woken by an abort, the wave is put back", events: then(policyWaits, control(ControlAbort, time.Minute), Woke{At: at(time.Minute)}),
			want: "state Aborted; finish Aborted aborted by U1", phase: PhaseDone, state: rollout.StateAborted,
			check: func(t *testing.T, r Rollout) {
				if ws := r.Status.Waves[0]; ws.State != rollout.StatePending || ws.Message != "" {
					t.Errorf("wave = %s %q, want Pending without a message", ws.State, ws.Message)
				}
			}},
		{name: "a pause during the wait holds after it", events: then(policyWaits, control(ControlPause, time.Minute), Woke{At: at(time.Hour)}),
			want: "hold", phase: PhaseHold, state: rollout.StatePaused},
		{name: "a pause does not end the wait early", events: then(policyWaits, control(ControlPause, time.Minute)),
			want: "state Paused; forward pause", phase: PhaseWait, state: rollout.StatePaused,
			check: func(t *testing.T, r Rollout) {
				if r.Interrupted(WaitUntil{}) {
					t.Error("a pause interrupted the wait")
				}
			}},
		{name: "a supersede ends the policy wait, not failed", events: then(policyWaits, Controlled{Control: rollout.Control{Action: "supersede", By: "fleet", Reason: "superseded by def5678", At: at(time.Minute)}}, Woke{At: at(time.Minute)}),
			want: "state Superseded; finish Superseded superseded by def5678", phase: PhaseDone, state: rollout.StateSuperseded},

		// Wave: its end, controls reaching it, its progress.
		{name: "a wave that succeeded: the next wave's approval", events: canaryDone, want: "post wave-finished canary; resolve sre", phase: PhaseApprovers, state: rollout.StatePromoting},
		{name: "the last wave succeeded: the rollout succeeds", events: then(euRunning, WaveEnded{At: at(30 * time.Minute), Status: waveDone("eu", "b", "c")}),
			want: "post wave-finished eu; state Succeeded; finish Succeeded", phase: PhaseDone, state: rollout.StateSucceeded},
		{name: "a failed wave is reverted by the scope (all: eu, then canary)", events: euFailed,
			want: "post wave-finished eu; state RollingBack; revert eu:b,c", phase: PhaseRevert, state: rollout.StateRollingBack},
		{name: "a failed wave without automatic rollback fails the rollout at once", events: then(started, PlanLoaded{At: at(time.Second), Plan: func() *rollout.Plan {
			p := testPlan(rollout.OnTimeoutReject)
			p.Rollback.Automatic = false
			return p
		}()}, WaveEnded{At: at(time.Minute), Status: waveFailed("canary", "a"), Failed: "site a degraded"}),
			want: "post wave-finished canary; state Failed; finish Failed site a degraded", phase: PhaseDone, state: rollout.StateFailed},
		{name: "a wave that ended without a verdict is unsettled and reverted", events: then(plain, WaveEnded{At: at(time.Minute), Lost: "terminated"}),
			want: "post wave-finished canary; state RollingBack; revert canary:a", phase: PhaseRevert, state: rollout.StateRollingBack,
			check: func(t *testing.T, r Rollout) {
				if ws := r.Status.Waves[0]; !ws.Unsettled || ws.State != rollout.StateFailed || ws.Message != "wave canary ended without a verdict: terminated" {
					t.Errorf("wave = %+v", ws)
				}
			}},
		{name: "a pause reaches the running wave", events: then(plain, control(ControlPause, time.Minute)),
			want: "state Paused; forward pause", phase: PhaseWave, state: rollout.StatePaused},
		{name: "a resume reaches the running wave", events: then(plain, control(ControlPause, time.Minute), control(ControlResume, 2*time.Minute)),
			want: "state Promoting; forward resume", phase: PhaseWave, state: rollout.StatePromoting},
		{name: "a rollback reaches the running wave as an abort", events: then(plain, control(ControlRollback, time.Minute)),
			want: "forward abort", phase: PhaseWave, state: rollout.StatePromoting},
		{name: "a paused rollout holds before the next wave", events: pausedBefore,
			want: "post wave-finished canary; hold", phase: PhaseHold, state: rollout.StatePaused},
		{name: "resumed before the next wave: its approval", events: then(pausedBefore, control(ControlResume, 20*time.Minute), Woke{At: at(20 * time.Minute)}),
			want: "resolve sre", phase: PhaseApprovers, state: rollout.StatePromoting},
		{name: "an abort while held ends the rollout", events: then(pausedBefore, control(ControlAbort, 20*time.Minute), Woke{At: at(20 * time.Minute)}),
			want: "state Aborted; finish Aborted aborted by U1", phase: PhaseDone, state: rollout.StateAborted},
		{name: "a spurious wake keeps holding", events: then(pausedBefore, Woke{At: at(20 * time.Minute)}), want: "hold", phase: PhaseHold, state: rollout.StatePaused},
		{name: "an abort while the wave runs ends the rollout after it", events: then(plain, control(ControlAbort, time.Minute), WaveEnded{At: at(2 * time.Minute), Status: waveDone("canary", "a")}),
			want: "post wave-finished canary; state Aborted; finish Aborted aborted by U1", phase: PhaseDone, state: rollout.StateAborted},
		{name: "a rollback while the wave runs reverts every promoted site", events: then(euRunning, control(ControlRollback, 13*time.Minute), WaveEnded{At: at(14 * time.Minute), Status: waveDone("eu", "b", "c")}),
			want: "post wave-finished eu; state RollingBack; revert eu:b,c", phase: PhaseRevert, state: rollout.StateRollingBack},
		{name: "a supersede while the wave runs ends it after the wave, not failed", events: then(plain, Controlled{Control: rollout.Control{Action: "supersede", By: "fleet", Reason: "superseded by def5678"}}, WaveEnded{At: at(2 * time.Minute), Status: waveDone("canary", "a")}),
			want: "post wave-finished canary; state Superseded; finish Superseded superseded by def5678", phase: PhaseDone, state: rollout.StateSuperseded},
		{name: "a failure outranks a supersede: reverted, failed", events: then(plain, Controlled{Control: rollout.Control{Action: "supersede", By: "fleet", Reason: "superseded by def5678"}}, WaveEnded{At: at(2 * time.Minute), Status: waveFailed("canary", "a"), Failed: "site a degraded"}),
			want: "post wave-finished canary; state RollingBack; revert canary:a", phase: PhaseRevert, state: rollout.StateRollingBack},
		{name: "a supersede reaches the running wave as a supersede, not an abort", events: then(plain, Controlled{Control: rollout.Control{Action: "supersede", By: "fleet"}}),
			want: "forward supersede", phase: PhaseWave, state: rollout.StatePromoting},
		{name: "a second supersede is ignored", events: then(plain, Controlled{Control: rollout.Control{Action: "supersede", By: "fleet"}}, Controlled{Control: rollout.Control{Action: "supersede", By: "fleet"}}),
			want: "", phase: PhaseWave, state: rollout.StatePromoting,
			check: func(t *testing.T, r Rollout) {
				if len(r.Status.Controls) != 1 {
					t.Errorf("controls = %v, want one", r.Status.Controls)
				}
			}},
		{name: "progress of the running wave shows in its status", events: then(plain, WaveProgressed{Change: rollout.WaveChange{Wave: "canary", State: rollout.StateBaking,
			Sites: []rollout.SiteStatus{{Name: "a", Verdict: rollout.VerdictHealthy}}}}),
			want: "", phase: PhaseWave, state: rollout.StatePromoting,
			check: func(t *testing.T, r Rollout) {
				if ws := r.Status.Waves[0]; ws.State != rollout.StateBaking || ws.Sites[0].Verdict != rollout.VerdictHealthy {
					t.Errorf("wave = %s %s", ws.State, ws.Sites[0].Verdict)
				}
			}},
		{name: "progress of another wave is ignored", events: then(plain, WaveProgressed{Change: rollout.WaveChange{Wave: "eu", State: rollout.StateBaking}}),
			want: "", phase: PhaseWave, state: rollout.StatePromoting,
			check: func(t *testing.T, r Rollout) {
				if ws := r.Status.Waves[1]; ws.State != rollout.StatePending {
					t.Errorf("wave eu = %s", ws.State)
				}
			}},

		// Approvers and approval: resolve, votes, timeout, onTimeout, stops.
		{name: "approvers resolved: the request waits for votes", events: asking,
			want: "state AwaitingApproval; post approval-requested eu; votes 1h0m0s", phase: PhaseApproval, state: rollout.StateApproval,
			check: func(t *testing.T, r Rollout) {
				a := r.Status.Waves[1].Approval
				if a == nil || !slices.Equal(a.Eligible, []string{"U1", "U2", "U3"}) || a.GroupIDs["sre"] != "S1" || !a.ExpiresAt.Equal(at(71*time.Minute)) {
					t.Errorf("approval = %+v", a)
				}
			}},
		{name: "groups that cannot be resolved add nobody (fail closed)", events: then(canaryDone, ApproversResolved{At: at(11 * time.Minute), Members: []string{"U9"}, Err: "slack down"}),
			want: "state AwaitingApproval; post approval-requested eu; votes 1h0m0s", phase: PhaseApproval, state: rollout.StateApproval,
			check: func(t *testing.T, r Rollout) {
				a := r.Status.Waves[1].Approval
				if !slices.Equal(a.Eligible, []string{"U1", "U2"}) || len(a.Unresolved) != 1 || !strings.Contains(a.Unresolved[0], "@sre could not be resolved: slack down") {
					t.Errorf("approval = %+v", a)
				}
			}},
		{name: "fewer eligible approvers than the quorum: unmet, rejected at once", events: then(started, PlanLoaded{At: at(time.Second), Plan: func() *rollout.Plan {
			p := testPlan(rollout.OnTimeoutReject)
			p.Waves[0].Approval = &rollout.Approval{Approvers: []string{"@sre"}, Quorum: 1, Timeout: time.Hour, OnTimeout: rollout.OnTimeoutReject}
			return p
		}()}, ApproversResolved{At: at(time.Minute), Unresolved: []string{"@sre: no such group"}}),
			want:  "state AwaitingApproval; post approval-requested canary; post approval-decided canary; state Failed; finish Failed approval of wave canary cannot be approved: 0 eligible approvers for a quorum of 1 (@sre: no such group)",
			phase: PhaseDone, state: rollout.StateFailed},
		{name: "a vote that reaches the quorum ends the wait", events: then(asking, VoteCast{Vote: rollout.Vote{By: "U3", Approve: true}}),
			want: "", phase: PhaseApproval, state: rollout.StateApproval,
			check: func(t *testing.T, r Rollout) {
				if !r.Interrupted(AwaitVotes{}) || r.Status.Waves[1].Approval.Outcome != rollout.ApprovalApproved {
					t.Errorf("approval = %+v", r.Status.Waves[1].Approval)
				}
			}},
		{name: "approved: the wave runs (no policies)", events: approved,
			want: "post approval-decided eu; state Promoting; post wave-started eu; run wave 1", phase: PhaseWave, state: rollout.StatePromoting},
		{name: "approved: the policies look again", events: pApproved,
			want: "post approval-decided eu; policies wave 1", phase: PhasePolicy, state: rollout.StateApproval,
			check: func(t *testing.T, r Rollout) {
				if want := (Cursor{Wave: 1, Gate: GateRecheck, Entered: true}); r.At != want {
					t.Errorf("cursor = %+v, want %+v", r.At, want)
				}
			}},
		{name: "the policies' second look allows: the wave runs", events: then(pApproved, allow(21*time.Minute)),
			want: "state Promoting; post wave-started eu; run wave 1", phase: PhaseWave, state: rollout.StatePromoting},
		{name: "rejected: the rollout fails", events: then(asking, VoteCast{Wave: "eu", Vote: rollout.Vote{By: "U2", Approve: false, Comment: "not today"}}, Woke{At: at(12 * time.Minute)}),
			want: "post approval-decided eu; state Failed; finish Failed wave eu rejected by U2: not today", phase: PhaseDone, state: rollout.StateFailed},
		{name: "expired under onTimeout reject: the rollout fails", events: then(asking, Woke{At: at(71 * time.Minute)}),
			want:  "post approval-decided eu; state Failed; finish Failed approval of wave eu expired at 2026-11-30T10:11:00Z with 0 of 1 approvals (timeout 1h0m0s)",
			phase: PhaseDone, state: rollout.StateFailed},
		{name: "expired under onTimeout pause: the rollout pauses", events: pExpired,
			want: "post approval-decided eu; state Paused; hold", phase: PhaseHold, state: rollout.StatePaused,
			check: func(t *testing.T, r Rollout) {
				c := r.Status.Controls[len(r.Status.Controls)-1]
				if c.By != "fleetwave" || !strings.HasSuffix(c.Reason, "resume to ask again") || r.ResumeState != rollout.StateApproval {
					t.Errorf("control = %+v, resume state %s", c, r.ResumeState)
				}
			}},
		{name: "resumed after an expiry: asked again", events: then(pExpired, control(ControlResume, 2*time.Hour), Woke{At: at(2 * time.Hour)}),
			want: "resolve sre", phase: PhaseApprovers, state: rollout.StateApproval},
		{name: "asked again: the votes of eligible approvers are kept", events: func() []Event {
			ev := then(pCanaryDone, allow(11*time.Minute), ApproversResolved{At: at(11 * time.Minute), Members: []string{"U3"}})
			p := testPlan(rollout.OnTimeoutPause)
			p.Waves[1].Approval.Quorum = 2
			ev[1] = PlanLoaded{At: at(time.Second), Plan: p, Commit: "abc1234", Policies: true}
			return then(ev, VoteCast{Vote: rollout.Vote{By: "U1", Approve: true}}, Woke{At: at(71 * time.Minute)}, control(ControlResume, 2*time.Hour), Woke{At: at(2 * time.Hour)},
				ApproversResolved{At: at(2 * time.Hour), Members: []string{"U3"}})
		}(), want: "state AwaitingApproval; post approval-requested eu; votes 1h0m0s", phase: PhaseApproval, state: rollout.StateApproval,
			check: func(t *testing.T, r Rollout) {
				if a := r.Status.Waves[1].Approval; len(a.Votes) != 1 || a.Votes[0].By != "U1" || a.Outcome != "" {
					t.Errorf("approval = %+v", a)
				}
			}},
		{name: "an abort while held after an expiry ends the rollout", events: then(pExpired, control(ControlAbort, 2*time.Hour), Woke{At: at(2 * time.Hour)}),
			want: "state Aborted; finish Aborted aborted by U1", phase: PhaseDone, state: rollout.StateAborted},
		{name: "an abort while votes are awaited withdraws the request", events: then(asking, control(ControlAbort, 20*time.Minute), Woke{At: at(20 * time.Minute)}),
			want: "post approval-decided eu; state Aborted; finish Aborted aborted by U1", phase: PhaseDone, state: rollout.StateAborted,
			check: func(t *testing.T, r Rollout) {
				if a := r.Status.Waves[1].Approval; a.Outcome != rollout.ApprovalWithdrawn {
					t.Errorf("outcome = %q, want withdrawn", a.Outcome)
				}
			}},
		{name: "approved while paused: the approved wave holds", events: then(asking, control(ControlPause, 11*time.Minute), VoteCast{Vote: rollout.Vote{By: "U3", Approve: true}}, Woke{At: at(12 * time.Minute)}),
			want: "post approval-decided eu; hold", phase: PhaseHold, state: rollout.StatePaused},
		{name: "resumed after the approved hold: the wave runs", events: then(asking, control(ControlPause, 11*time.Minute), VoteCast{Vote: rollout.Vote{By: "U3", Approve: true}}, Woke{At: at(12 * time.Minute)},
			control(ControlResume, 13*time.Minute), Woke{At: at(13 * time.Minute)}),
			want: "state Promoting; post wave-started eu; run wave 1", phase: PhaseWave, state: rollout.StatePromoting},
		{name: "a rollback on the approved hold reverts the earlier waves", events: then(asking, control(ControlPause, 11*time.Minute), VoteCast{Vote: rollout.Vote{By: "U3", Approve: true}}, Woke{At: at(12 * time.Minute)},
			control(ControlRollback, 13*time.Minute), Woke{At: at(13 * time.Minute)}),
			want: "state RollingBack; revert canary:a", phase: PhaseRevert, state: rollout.StateRollingBack},
		{name: "a vote for a wave without approval is ignored", events: then(asking, VoteCast{Wave: "canary", Vote: rollout.Vote{By: "U1", Approve: true}}),
			want: "", phase: PhaseApproval, state: rollout.StateApproval},

		// Revert: the sets in order, failures, an unsettled wave's second pass, then the end.
		{name: "the reverted set is followed by the next (scope all)", events: then(euFailed, Reverted{At: at(31 * time.Minute), Sites: []Reversion{{Site: "b", Revert: "r-b", Converged: true}, {Site: "c", Revert: "r-c", Converged: true}}}),
			want: "post reverted eu; revert canary:a", phase: PhaseRevert, state: rollout.StateRollingBack,
			check: func(t *testing.T, r Rollout) {
				if s := r.Status.Waves[1].Sites[0]; s.Verdict != rollout.VerdictReverted || s.Revert != "r-b" {
					t.Errorf("site b = %+v", s)
				}
			}},
		{name: "after the last set the rollout fails with the wave's reason", events: then(euFailed, Reverted{At: at(31 * time.Minute), Sites: []Reversion{{Site: "b", Revert: "r-b", Converged: true}, {Site: "c", Revert: "r-c", Converged: true}}},
			Reverted{At: at(32 * time.Minute), Sites: []Reversion{{Site: "a", Revert: "r-a", Converged: true}}}),
			want: "post reverted canary; state Failed; finish Failed site b degraded in wave eu: error-rate", phase: PhaseDone, state: rollout.StateFailed},
		{name: "a revert that failed is reported and the next set still goes", events: then(euFailed, Reverted{At: at(31 * time.Minute), Err: "push rejected"}),
			want: "revert canary:a", phase: PhaseRevert, state: rollout.StateRollingBack,
			check: func(t *testing.T, r Rollout) {
				if r.Status.Reason != "revert of b, c failed: push rejected" {
					t.Errorf("reason = %q", r.Status.Reason)
				}
			}},
		{name: "a site that cannot be reverted is named with its fix; the other sets still go", events: then(euFailed, Reverted{At: at(31 * time.Minute),
			Sites: []Reversion{{Site: "b", Revert: "r-b", Converged: true}, {Site: "c", Problem: "revert of p-c conflicts: x changed; resolve it by hand: git switch sites/c"}}}),
			want: "post reverted eu; revert canary:a", phase: PhaseRevert, state: rollout.StateRollingBack,
			check: func(t *testing.T, r Rollout) {
				c := r.Status.Waves[1].Sites[1]
				if c.Verdict == rollout.VerdictReverted || !c.Promoted || !strings.HasPrefix(c.Message, "not reverted: revert of p-c conflicts") {
					t.Errorf("site c = %+v", c)
				}
				if !strings.Contains(r.Status.Reason, "site c not reverted: revert of p-c conflicts: x changed; resolve it by hand: git switch sites/c") {
					t.Errorf("reason = %q", r.Status.Reason)
				}
			}},
		{name: "an unsettled wave's sites without a promotion are reverted again later", events: then(plain, WaveEnded{At: at(time.Minute), Lost: "terminated"}, Reverted{At: at(2 * time.Minute), Sites: []Reversion{{Site: "a"}}}),
			want: "revert late canary:a", phase: PhaseRevert, state: rollout.StateRollingBack},
		{name: "the late revert finds the promotion that landed", events: then(plain, WaveEnded{At: at(time.Minute), Lost: "terminated"}, Reverted{At: at(2 * time.Minute), Sites: []Reversion{{Site: "a"}}},
			Reverted{At: at(4 * time.Minute), Sites: []Reversion{{Site: "a", Revert: "r-a", Converged: true}}}),
			want: "post reverted canary; state Failed; finish Failed wave canary ended without a verdict: terminated", phase: PhaseDone, state: rollout.StateFailed,
			check: func(t *testing.T, r Rollout) {
				if s := r.Status.Waves[0].Sites[0]; s.Verdict != rollout.VerdictReverted || !strings.Contains(s.Message, "landed late") {
					t.Errorf("site a = %+v", s)
				}
			}},
		{name: "a late revert that failed is reported", events: then(plain, WaveEnded{At: at(time.Minute), Lost: "terminated"}, Reverted{At: at(2 * time.Minute), Sites: []Reversion{{Site: "a"}}},
			Reverted{At: at(4 * time.Minute), Err: "git down"}),
			want:  "post reverted canary; state Failed; finish Failed wave canary ended without a verdict: terminated; second revert of wave canary failed: git down",
			phase: PhaseDone, state: rollout.StateFailed},
		{name: "controls are refused while rolling back", events: then(euFailed, control(ControlPause, 31*time.Minute)),
			want: "state Paused; forward pause", phase: PhaseRevert, state: rollout.StatePaused,
			check: func(t *testing.T, r Rollout) {
				// The workflow's validator refuses it first; Next only applies what it accepted.
				if err := (func() Rollout { r, _ := run(euFailed...); return r }()).CheckControl(ControlPause); err == nil {
					t.Error("a pause was accepted while rolling back")
				}
			}},
		{name: "an operator's rollback after the revert ends rolled back", events: then(euRunning, control(ControlRollback, 13*time.Minute), WaveEnded{At: at(14 * time.Minute), Status: waveDone("eu", "b", "c")},
			Reverted{At: at(15 * time.Minute), Sites: []Reversion{{Site: "b", Revert: "r-b", Converged: true}, {Site: "c", Revert: "r-c", Converged: true}}},
			Reverted{At: at(16 * time.Minute), Sites: []Reversion{{Site: "a", Revert: "r-a", Converged: true}}}),
			want: "post reverted canary; state RolledBack; finish RolledBack rolled back by U1", phase: PhaseDone, state: rollout.StateRolledBack},

		// Cancelled in Temporal.
		{name: "a cancellation withdraws open approvals", events: then(asking, Cancelled{At: at(20 * time.Minute)}),
			want: "post approval-decided eu", phase: PhaseApproval, state: rollout.StateApproval,
			check: func(t *testing.T, r Rollout) {
				if r.Status.Reason != "the rollout's workflow was cancelled in Temporal" || r.Status.Waves[1].Approval.Outcome != rollout.ApprovalWithdrawn {
					t.Errorf("reason %q, approval %+v", r.Status.Reason, r.Status.Waves[1].Approval)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, cmds := run(tt.events...)
			if got := describe(cmds); got != tt.want {
				t.Errorf("commands:\n got %s\nwant %s", got, tt.want)
			}
			if r.Phase != tt.phase || r.Status.State != tt.state {
				t.Errorf("phase %s, state %s; want %s, %s", r.Phase, r.Status.State, tt.phase, tt.state)
			}
			steps := 0
			for i, c := range cmds {
				if _, ok := c.(Step); ok {
					steps++
					if i != len(cmds)-1 {
						t.Errorf("step %T is not the last command", c)
					}
				}
			}
			if steps > 1 {
				t.Errorf("%d steps, want at most one", steps)
			}
			if tt.check != nil {
				tt.check(t, r)
			}
		})
	}
}

func waits(n int) func(t *testing.T, r Rollout) {
	return func(t *testing.T, r Rollout) {
		if r.Waits != n {
			t.Errorf("waits = %d, want %d", r.Waits, n)
		}
	}
}

// TestNextRefusesAnswersNobodyAskedFor: an event that answers a step (a plan loaded, a policy
// decision, a wave's end...) in a phase that did not ask for it is a bug in the workflow, and
// Next says so instead of guessing.
func TestNextRefusesAnswersNobodyAskedFor(t *testing.T) {
	states := map[Phase][]Event{PhaseLoad: started, PhasePolicy: policyAsked, PhaseWait: policyWaits, PhaseApprovers: canaryDone,
		PhaseApproval: asking, PhaseWave: plain, PhaseRevert: euFailed, PhaseHold: pausedBefore, PhaseDone: then(started, StepFailed{})}
	answers := []Event{PlanLoaded{Plan: testPlan(rollout.OnTimeoutReject)}, StepFailed{}, PolicyDecided{}, ApproversResolved{}, Woke{}, WaveEnded{}, Reverted{}}
	asked := 0
	for phase, events := range states {
		r, _ := run(events...)
		if r.Phase != phase && !(phase == PhaseDone && r.Phase == PhaseDone) {
			t.Fatalf("fixture for %s is in phase %s", phase, r.Phase)
		}
		for _, e := range answers {
			want, _ := awaitedIn(e)
			if slices.Contains(want, phase) {
				asked++
				continue // covered by TestNext
			}
			func() {
				defer func() {
					if recover() == nil {
						t.Errorf("%T in phase %s was taken", e, phase)
					}
				}()
				r.Next(e)
			}()
		}
	}
	if asked == 0 {
		t.Error("no event was expected anywhere")
	}
}

// TestNextDoesNotChangeItsInput: the state given to Next stays as it was, so the workflow's
// query and a replay see the same thing.
func TestNextDoesNotChangeItsInput(t *testing.T) {
	r, _ := run(asking...)
	before := fmt.Sprintf("%+v", r.Status)
	approval := *r.Status.Waves[1].Approval
	r.Next(VoteCast{Vote: rollout.Vote{By: "U3", Approve: true}})
	r.Next(control(ControlAbort, time.Hour))
	r.Next(Cancelled{At: at(time.Hour)})
	if after := fmt.Sprintf("%+v", r.Status); after != before || r.Status.Waves[1].Approval.Outcome != approval.Outcome || len(r.Status.Waves[1].Approval.Votes) != 0 {
		t.Errorf("Next changed its input:\nbefore %s\nafter  %s", before, after)
	}
}

// TestCause: every way a rollout ends has its code beside its reason.
func TestCause(t *testing.T) {
	reverted := Reverted{At: at(31 * time.Minute), Sites: []Reversion{{Site: "b", Revert: "r-b", Converged: true}, {Site: "c", Revert: "r-c", Converged: true}}}
	revertedA := Reverted{At: at(32 * time.Minute), Sites: []Reversion{{Site: "a", Revert: "r-a", Converged: true}}}
	tests := []struct {
		name   string
		events []Event
		want   string
	}{
		{"running", euRunning, ""},
		{"succeeded", then(euRunning, WaveEnded{At: at(30 * time.Minute), Status: waveDone("eu", "b", "c")}), ""},
		{"load failed", then(started, StepFailed{At: at(time.Second), Message: "bad"}), rollout.CauseLoadFailed},
		{"policy failed", then(policyAsked, StepFailed{At: at(time.Second), Message: "rego"}), rollout.CausePolicyFailed},
		{"policy denied", then(policyAsked, PolicyDecided{At: at(time.Minute), Decision: rollout.PolicyDecision{Outcome: rollout.PolicyDeny, Deny: []string{"freeze"}}}), rollout.CausePolicyDenied},
		{"approval rejected", then(asking, VoteCast{Wave: "eu", Vote: rollout.Vote{By: "U2", Approve: false}}, Woke{At: at(12 * time.Minute)}), rollout.CauseApprovalRejected},
		{"approval expired", then(asking, Woke{At: at(72 * time.Minute)}), rollout.CauseApprovalExpired},
		{"wave degraded", then(euFailed, reverted, revertedA), rollout.CauseWaveDegraded},
		{"wave lost", then(euRunning, WaveEnded{At: at(30 * time.Minute), Lost: "terminated"}, reverted, revertedA), rollout.CauseWaveLost},
		{"aborted", then(euRunning, control(ControlAbort, 20*time.Minute), WaveEnded{At: at(21 * time.Minute), Status: waveDone("eu", "b", "c")}), rollout.CauseAborted},
		{"rolled back", then(euRunning, control(ControlRollback, 20*time.Minute), WaveEnded{At: at(21 * time.Minute), Status: waveDone("eu", "b", "c")}, reverted, revertedA), rollout.CauseRolledBack},
		{"superseded", then(euRunning, Controlled{Control: rollout.Control{Action: string(ControlSupersede), By: "fleet", At: at(20 * time.Minute)}}, WaveEnded{At: at(21 * time.Minute), Status: waveDone("eu", "b", "c")}), rollout.CauseSuperseded},
		{"cancelled", then(euRunning, Cancelled{At: at(20 * time.Minute)}), rollout.CauseCancelled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := run(tt.events...)
			if r.Status.Cause != tt.want {
				t.Errorf("cause %q, want %q (state %s: %s)", r.Status.Cause, tt.want, r.Status.State, r.Status.Reason)
			}
		})
	}
}

// TestDetails: the Temporal UI's current details follow the runbook wherever it stands,
// derived from the state (they used to be assigned, and went stale: a pause while the
// policies looked kept showing the wave before).
func TestDetails(t *testing.T) {
	for _, tc := range []struct {
		name   string
		events []Event
		want   string
	}{
		{"loading", started, "Loading the plan at abc1234"},
		{"the policies look", policyAsked, "Wave 1/2 canary: evaluating the policies"},
		{"the policies wait", policyWaits, "Wave 1/2 canary waiting until 2026-11-30T10:00:00Z: freeze"},
		{"paused while the policies looked", then(policyAsked, control(ControlPause, time.Second), allow(time.Minute)),
			"Paused before wave canary: waiting for resume"},
		{"the wave runs", plain, "Wave 1/2 canary: 1 site"},
		{"resolving approvers", canaryDone, "Wave 2/2 eu: resolving its approvers @sre"},
		{"asking", asking, "Wave 2/2 eu waiting for approval: 0 of 1, until 2026-11-30T10:11:00Z (approvers: U1, U2, @sre)"},
		{"a vote counts at once", then(asking, VoteCast{Vote: rollout.Vote{By: "U3", Approve: false, Comment: "no"}}),
			"Wave 2/2 eu rejected by U3 (approvers: U1, U2, @sre)"},
		{"paused after the approval expired", pExpired,
			"Paused: approval of wave eu expired at 2026-11-30T10:11:00Z with 0 of 1 approvals (timeout 1h0m0s); resume to ask again"},
		{"reverting", euFailed, "Reverting 2 sites (b, c) in wave eu: site b degraded in wave eu: error-rate"},
		{"rolled out", then(euRunning, WaveEnded{At: at(30 * time.Minute), Status: waveDone("eu", "b", "c")}), "Rolled out abc1234 to 3 sites"},
		{"aborted", then(euRunning, control(ControlAbort, 20*time.Minute), WaveEnded{At: at(21 * time.Minute), Status: waveDone("eu", "b", "c")}),
			"Stopped: aborted by U1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := run(tc.events...)
			if got := r.Details(); got != tc.want {
				t.Errorf("details = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestAloneGate: with Alone, each wave's last gate before it runs asks whether an earlier
// rollout of the fleet still runs; while one does, or nobody can tell, the wave waits and asks
// again every AloneEvery (fail closed); a stop ends the wait before the wave.
func TestAloneGate(t *testing.T) {
	alone := func(events ...Event) (Rollout, []any) {
		r := NewRollout("rollout/demo/abc1234", "demo", "abc1234")
		r.Alone = true
		var cmds []any
		for _, e := range events {
			r, cmds = next(r, e)
		}
		return r, cmds
	}
	other := AloneChecked{At: at(2 * time.Second), Other: "rollout/demo/0000000old00"}
	for _, tc := range []struct {
		name   string
		events []Event
		want   string
		wave   rollout.State
		msg    string
	}{
		{"the gate asks first", plain, "CheckAlone", rollout.StatePending, ""},
		{"an earlier rollout runs: wait", then(plain, other), "state Waiting; wait until 32s", rollout.StateWaiting,
			"waiting for rollout rollout/demo/0000000old00 of the fleet to end: one rollout promotes at a time"},
		{"nobody can tell: wait", then(plain, AloneChecked{At: at(2 * time.Second), Err: "visibility unavailable"}), "state Waiting; wait until 32s", rollout.StateWaiting,
			"cannot tell whether another rollout of the fleet promotes (visibility unavailable): asking again"},
		{"asked again", then(plain, other, Woke{At: at(32 * time.Second)}), "CheckAlone", rollout.StateWaiting, ""},
		{"alone: the wave runs", then(plain, other, Woke{At: at(32 * time.Second)}, AloneChecked{At: at(33 * time.Second)}),
			"state Promoting; post wave-started canary; run wave 0", rollout.StatePromoting, ""},
		{"aborted while waiting", then(plain, other, control(ControlAbort, 10*time.Second), Woke{At: at(10 * time.Second)}),
			"state Aborted; finish Aborted aborted by U1", rollout.StatePending, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := alone(tc.events[:len(tc.events)-1]...)
			r, cmds := next(r, tc.events[len(tc.events)-1])
			if got := describe(cmds); got != tc.want {
				t.Errorf("commands %q, want %q", got, tc.want)
			}
			ws := r.Status.Waves[0]
			if ws.State != tc.wave || (tc.msg != "" && ws.Message != tc.msg) {
				t.Errorf("wave canary %s %q, want %s %q", ws.State, ws.Message, tc.wave, tc.msg)
			}
		})
	}
}

// TestCatchUpRunbook: a catch-up's runbook runs the site's wave alone, with the site alone and
// no approval; a catch-up of a site no longer in a wave fails at the load; a rollout that
// superseded a catch-up asks again every CatchUpEvery.
func TestCatchUpRunbook(t *testing.T) {
	catchUp := func(site string, events ...Event) (Rollout, []any) {
		r := NewRollout("catchup/demo/"+site, "demo", "abc1234")
		r.Alone, r.CatchUp = true, site // "": a rollout with the alone gate
		var cmds []any
		for _, e := range events {
			r, cmds = next(r, e)
		}
		return r, cmds
	}
	r, cmds := catchUp("c", plain...)
	if got := describe(cmds); got != "CheckAlone" {
		t.Errorf("after the load: %q, want the alone gate (no approval)", got)
	}
	if len(r.Plan.Waves) != 1 || r.Plan.Waves[0].Name != "eu" || len(r.Status.Waves) != 1 || len(r.Status.Waves[0].Sites) != 1 ||
		r.Status.Waves[0].Sites[0].Name != "c" || r.Plan.Waves[0].Approval != nil {
		t.Fatalf("catch-up plan %+v, status %+v; want wave eu with c alone, no approval", r.Plan.Waves, r.Status.Waves)
	}
	r, cmds = next(r, AloneChecked{At: at(2 * time.Second)})
	if got := describe(cmds); got != "state Promoting; post wave-started eu; run wave 0" {
		t.Errorf("alone: %q", got)
	}
	_, cmds = catchUp("gone", plain...)
	if got := describe(cmds); !strings.HasPrefix(got, "state Failed; finish Failed catch-up of gone at abc1234: site gone is in no wave of the plan") {
		t.Errorf("a site no longer in the plan: %q", got)
	}

	r, _ = catchUp("", plain...)
	r, cmds = next(r, AloneChecked{At: at(2 * time.Second), Other: "catchup/demo/c", CatchUp: true})
	if got := describe(cmds); got != "state Waiting; wait until 4s" ||
		r.Status.Waves[0].Message != "waiting for catch-up catchup/demo/c to end: this rollout supersedes it, one writer per site branch" {
		t.Errorf("a superseded catch-up: %q, %q", got, r.Status.Waves[0].Message)
	}
}
