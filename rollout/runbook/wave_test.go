package runbook

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fleetwave/fleetwave/rollout"
)

var t0 = time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

// testWave is a wave of three sites in batches of two (a,b then c), a 10m bake checked every
// minute, and the given failure budget.
func testWave(budget rollout.FailureBudget) Wave {
	w := rollout.Wave{Name: "eu", Sites: []string{"a", "b", "c"}, MaxParallel: 2, Bake: 10 * time.Minute, MaxFailures: budget}
	h := rollout.Health{ConvergenceTimeout: 5 * time.Minute, Interval: time.Minute, FailureThreshold: 2, UnknownTimeout: 3 * time.Minute}
	st := rollout.WaveStatus{Name: "eu", State: rollout.StatePending}
	for _, s := range w.Sites {
		st.Sites = append(st.Sites, rollout.SiteStatus{Name: s, Branch: "sites/" + s, Verdict: rollout.VerdictPending})
	}
	return NewWave("rollout/demo/abc1234", "abc1234", w, h, true, st)
}

func healthy(site, commit string) rollout.SiteState {
	return rollout.SiteState{Site: site, Reachable: true, Ready: true, Revision: rollout.FormatRevision("sites/"+site, commit),
		Checks: []rollout.CheckResult{{Name: "error-rate", OK: true, Value: 0.001, Threshold: "<= 0.01"}}}
}

func failing(site, commit string) rollout.SiteState {
	st := healthy(site, commit)
	st.Checks = []rollout.CheckResult{{Name: "error-rate", OK: false, Value: 0.2, Threshold: "<= 0.01"}}
	return st
}

func promotion(sites ...string) BatchPromoted {
	e := BatchPromoted{At: at(time.Minute)}
	for _, s := range sites {
		e.Sites = append(e.Sites, Promotion{Site: s, Commit: "p-" + s, Previous: "old-" + s, Ours: true})
	}
	return e
}

func converged(d time.Duration, sites ...string) SitesConverged {
	e := SitesConverged{At: at(d)}
	for _, s := range sites {
		e.Sites = append(e.Sites, Convergence{Site: s, Converged: true, State: healthy(s, "p-"+s)})
	}
	return e
}

// step feeds events in order and returns the state and the last command.
func step(r Wave, events ...WaveEvent) (Wave, WaveStep) {
	var c WaveStep
	for _, e := range events {
		r, c, _ = r.Next(e)
	}
	return r, c
}

// toBake are the events of a wave whose three sites converge (a,b at 2m, c at 4m), so that it
// bakes until 14m.
var toBake = []WaveEvent{WaveStarted{At: t0}, promotion("a", "b"), converged(2*time.Minute, "a", "b"),
	BatchPromoted{At: at(3 * time.Minute), Sites: []Promotion{{Site: "c", Commit: "p-c", Ours: true}}}, converged(4*time.Minute, "c")}

// baking is a wave in its bake, after toBake.
func baking(budget rollout.FailureBudget) Wave {
	r, _ := step(testWave(budget), toBake...)
	return r
}

func round(d time.Duration, states ...rollout.SiteState) HealthObserved {
	return HealthObserved{At: at(d), States: states}
}

func verdicts(r Wave) string {
	var out []string
	for _, s := range r.Status.Sites {
		out = append(out, s.Name+"="+string(s.Verdict))
	}
	return strings.Join(out, " ")
}

// TestNextWave walks every phase of the wave runbook with every event it can get there.
func TestNextWave(t *testing.T) {
	allHealthy := round(5*time.Minute, healthy("a", "p-a"), healthy("b", "p-b"), healthy("c", "p-c"))
	tests := []struct {
		name     string
		state    Wave
		events   []WaveEvent
		want     WaveStep
		phase    WavePhase
		state2   rollout.State // the wave's State
		verdicts string
		check    func(t *testing.T, r Wave)
	}{
		// Promote: start, pause, resume, abort, a failed push.
		{name: "start promotes the first batch", state: testWave(rollout.FailureBudget{}), events: []WaveEvent{WaveStarted{At: t0}},
			want: PromoteSites{Batch: 0, Sites: []string{"a", "b"}}, phase: WavePromote, state2: rollout.StatePromoting, verdicts: "a=Pending b=Pending c=Pending"},
		{name: "pause before a batch holds", state: testWave(rollout.FailureBudget{}), events: []WaveEvent{WaveStarted{At: t0}, WaveControl{At: t0, Action: ControlPause}},
			want: HoldPaused{}, phase: WavePromote, state2: rollout.StatePaused},
		{name: "resume promotes", state: testWave(rollout.FailureBudget{}), events: []WaveEvent{WaveStarted{At: t0}, WaveControl{At: t0, Action: ControlPause}, WaveControl{At: at(time.Hour), Action: ControlResume}},
			want: PromoteSites{Batch: 0, Sites: []string{"a", "b"}}, phase: WavePromote, state2: rollout.StatePromoting},
		{name: "abort before a batch ends the wave", state: testWave(rollout.FailureBudget{}), events: []WaveEvent{WaveStarted{At: t0}, WaveControl{At: t0, Action: ControlAbort}},
			want: FinishWave{State: rollout.StateAborted}, phase: WaveDone, state2: rollout.StateAborted},
		{name: "abort while paused ends the wave", state: testWave(rollout.FailureBudget{}), events: []WaveEvent{WaveStarted{At: t0}, WaveControl{At: t0, Action: ControlPause}, WaveControl{At: t0, Action: ControlAbort}},
			want: FinishWave{State: rollout.StateAborted}, phase: WaveDone, state2: rollout.StateAborted},
		{name: "a supersede lets a converging batch finish: the wave stops at the next safe point", state: testWave(rollout.FailureBudget{}),
			events: []WaveEvent{WaveStarted{At: t0}, promotion("a", "b"), WaveControl{At: at(time.Minute), Action: ControlSupersede}},
			want:   nil, phase: WaveConverge, state2: rollout.StateConverging},
		{name: "after a supersede, the converged batch ends the wave aborted", state: testWave(rollout.FailureBudget{}),
			events: []WaveEvent{WaveStarted{At: t0}, promotion("a", "b"), WaveControl{At: at(time.Minute), Action: ControlSupersede}, converged(2*time.Minute, "a", "b")},
			want:   FinishWave{State: rollout.StateAborted}, phase: WaveDone, state2: rollout.StateAborted, verdicts: "a=Healthy b=Healthy c=Pending"},
		{name: "a convergence wait cancelled for an abort ends the wave aborted", state: testWave(rollout.FailureBudget{}), events: []WaveEvent{WaveStarted{At: t0}, promotion("a", "b"), StepCancelled{At: at(2 * time.Minute)}},
			want: FinishWave{State: rollout.StateAborted}, phase: WaveDone, state2: rollout.StateAborted, verdicts: "a=Converging b=Converging c=Pending",
			check: func(t *testing.T, r Wave) {
				if !r.Site("a").Promoted || !r.Aborted {
					t.Errorf("a promoted %v, aborted %v: a rollback must find a promoted", r.Site("a").Promoted, r.Aborted)
				}
			}},
		{name: "a push cancelled for an abort ends the wave aborted; what landed stays promoted", state: testWave(rollout.FailureBudget{}),
			events: []WaveEvent{WaveStarted{At: t0}, BatchPromoted{At: at(time.Minute), Sites: []Promotion{{Site: "b", Commit: "p-b", Ours: true}}, Cancelled: true}},
			want:   FinishWave{State: rollout.StateAborted}, phase: WaveDone, state2: rollout.StateAborted, verdicts: "a=Pending b=Converging c=Pending",
			check: func(t *testing.T, r Wave) {
				if !r.Site("b").Promoted || r.Site("a").Promoted || !r.Aborted {
					t.Errorf("b promoted %v, a promoted %v, aborted %v: a rollback must find b and only b", r.Site("b").Promoted, r.Site("a").Promoted, r.Aborted)
				}
			}},
		{name: "a failed promotion fails the wave", state: testWave(rollout.FailureBudget{}), events: []WaveEvent{WaveStarted{At: t0}, StepFailed{At: t0, Message: "promote a, b in wave eu: rejected"}},
			want: FinishWave{State: rollout.StateFailed, Reason: "promote a, b in wave eu: rejected"}, phase: WaveDone, state2: rollout.StateFailed},

		{name: "a part of a batch that failed fails the wave, the parts pushed before stay promoted", state: testWave(rollout.FailureBudget{}),
			events: []WaveEvent{WaveStarted{At: t0}, BatchPromoted{At: at(time.Minute), Sites: []Promotion{{Site: "a", Commit: "p-a", Ours: true}},
				Failure: "promote 1 site (b) in wave eu: site branch sites/b does not exist"}},
			want:  FinishWave{State: rollout.StateFailed, Reason: "promote 1 site (b) in wave eu: site branch sites/b does not exist"},
			phase: WaveDone, state2: rollout.StateFailed, verdicts: "a=Converging b=Pending c=Pending",
			check: func(t *testing.T, r Wave) {
				if !r.Site("a").Promoted || r.Site("b").Promoted {
					t.Errorf("promoted: a=%v b=%v, want a only", r.Site("a").Promoted, r.Site("b").Promoted)
				}
			}},

		// Converge.
		{name: "a promoted batch is waited for", state: testWave(rollout.FailureBudget{}), events: []WaveEvent{WaveStarted{At: t0}, promotion("a", "b")},
			want:  AwaitConvergence{Sites: []Expect{{Site: "a", Commit: "p-a"}, {Site: "b", Commit: "p-b"}}, Deadline: at(6 * time.Minute)},
			phase: WaveConverge, state2: rollout.StateConverging, verdicts: "a=Converging b=Converging c=Pending"},
		{name: "a site found promoted by a lost attempt counts as promoted", state: testWave(rollout.FailureBudget{}),
			events: []WaveEvent{WaveStarted{At: t0}, BatchPromoted{At: at(time.Minute), Sites: []Promotion{{Site: "a", Commit: "p-a", Ours: true}, {Site: "b", Commit: "old-b"}}}},
			want:   AwaitConvergence{Sites: []Expect{{Site: "a", Commit: "p-a"}, {Site: "b", Commit: "old-b"}}, Deadline: at(6 * time.Minute)}, phase: WaveConverge,
			check: func(t *testing.T, r Wave) {
				if !r.Site("a").Promoted || r.Site("b").Promoted {
					t.Errorf("promoted: a=%v b=%v, want a only (b's branch already had the tree)", r.Site("a").Promoted, r.Site("b").Promoted)
				}
			}},
		{name: "a converged batch starts the next", state: testWave(rollout.FailureBudget{}), events: []WaveEvent{WaveStarted{At: t0}, promotion("a", "b"), converged(2*time.Minute, "a", "b")},
			want: PromoteSites{Batch: 1, Sites: []string{"c"}}, phase: WavePromote, verdicts: "a=Healthy b=Healthy c=Pending"},
		{name: "pause after a batch holds before the next", state: testWave(rollout.FailureBudget{}),
			events: []WaveEvent{WaveStarted{At: t0}, promotion("a", "b"), WaveControl{At: at(time.Minute), Action: ControlPause}, converged(2*time.Minute, "a", "b")},
			want:   HoldPaused{}, phase: WavePromote, state2: rollout.StatePaused},
		{name: "a control while converging changes nothing yet", state: testWave(rollout.FailureBudget{}),
			events: []WaveEvent{WaveStarted{At: t0}, promotion("a", "b"), WaveControl{At: at(time.Minute), Action: ControlAbort}},
			want:   nil, phase: WaveConverge},
		{name: "abort takes effect after the batch converged", state: testWave(rollout.FailureBudget{}),
			events: []WaveEvent{WaveStarted{At: t0}, promotion("a", "b"), WaveControl{At: at(time.Minute), Action: ControlAbort}, converged(2*time.Minute, "a", "b")},
			want:   FinishWave{State: rollout.StateAborted}, phase: WaveDone, verdicts: "a=Healthy b=Healthy c=Pending"},
		{name: "a site still converging when another ended the wait is waited for again", state: testWave(rollout.FailureBudget{Count: 1}),
			events: []WaveEvent{WaveStarted{At: t0}, promotion("a", "b"), SitesConverged{At: at(2 * time.Minute), Sites: []Convergence{
				{Site: "a", State: rollout.SiteState{Site: "a", Reachable: true, Revision: "sites/a@sha1:p-a", Stalled: true, Message: "kustomize build failed"}},
				{Site: "b", State: rollout.SiteState{Site: "b", Reachable: true, Revision: "sites/b@sha1:old-b", Ready: true}}}}},
			want:  RevertSites{Sites: []string{"a"}, Reason: "site a degraded in wave eu: flux failed to apply p-a: kustomize build failed; within the failure budget (1 of 1)"},
			phase: WaveReverting, verdicts: "a=Degraded b=Converging c=Pending",
			check: func(t *testing.T, r Wave) {
				r, c, _ := r.Next(SitesReverted{At: at(3 * time.Minute), Sites: []Reversion{{Site: "a", Revert: "r-a", Converged: true, State: healthy("a", "r-a")}}})
				if diff := cmp.Diff(AwaitConvergence{Sites: []Expect{{Site: "b", Commit: "p-b"}}, Deadline: at(6 * time.Minute)}, c); diff != "" {
					t.Errorf("after the budgeted revert (-want +got):\n%s", diff)
				}
				if verdicts(r) != "a=Reverted b=Converging c=Pending" || r.Site("a").Revert != "r-a" {
					t.Errorf("after the budgeted revert: %s, a reverted by %q", verdicts(r), r.Site("a").Revert)
				}
			}},
		{name: "flux failing at the commit fails the wave without a budget", state: testWave(rollout.FailureBudget{}),
			events: []WaveEvent{WaveStarted{At: t0}, promotion("a", "b"), SitesConverged{At: at(2 * time.Minute), Sites: []Convergence{
				{Site: "a", State: rollout.SiteState{Site: "a", Reachable: true, Revision: "sites/a@sha1:p-a", Stalled: true, Message: "kustomize build failed"}},
				{Site: "b", Converged: true, State: healthy("b", "p-b")}}}},
			want:  FinishWave{State: rollout.StateFailed, Reason: "site a degraded in wave eu: flux failed to apply p-a: kustomize build failed"},
			phase: WaveDone, state2: rollout.StateFailed, verdicts: "a=Degraded b=Healthy c=Pending"},
		{name: "missing the deadline degrades", state: testWave(rollout.FailureBudget{}),
			events: []WaveEvent{WaveStarted{At: t0}, promotion("a", "b"), SitesConverged{At: at(6 * time.Minute), TimedOut: true, Sites: []Convergence{
				{Site: "a", Converged: true, State: healthy("a", "p-a")},
				{Site: "b", State: rollout.SiteState{Site: "b", Reachable: true, Revision: "sites/b@sha1:old-b", Ready: true}}}}},
			want:  FinishWave{State: rollout.StateFailed, Reason: `site b degraded in wave eu: did not converge within 5m0s: applied "sites/b@sha1:old-b", want p-b`},
			phase: WaveDone, verdicts: "a=Healthy b=Degraded c=Pending"},
		{name: "an unreachable site missing the deadline says so", state: testWave(rollout.FailureBudget{}),
			events: []WaveEvent{WaveStarted{At: t0}, promotion("a", "b"), SitesConverged{At: at(6 * time.Minute), TimedOut: true, Sites: []Convergence{
				{Site: "a", State: rollout.SiteState{Site: "a", Message: "connection refused"}}, {Site: "b", Converged: true, State: healthy("b", "p-b")}}}},
			want:  FinishWave{State: rollout.StateFailed, Reason: "site a degraded in wave eu: did not converge within 5m0s: unreachable: connection refused"},
			phase: WaveDone},
		{name: "a site missing the deadline within the budget is reverted, then the next batch", state: testWave(rollout.FailureBudget{Count: 1}),
			events: []WaveEvent{WaveStarted{At: t0}, promotion("a", "b"), SitesConverged{At: at(6 * time.Minute), TimedOut: true, Sites: []Convergence{
				{Site: "a", Converged: true, State: healthy("a", "p-a")}, {Site: "b", State: rollout.SiteState{Site: "b", Message: "timeout"}}}},
				SitesReverted{At: at(7 * time.Minute), Sites: []Reversion{{Site: "b", Revert: "r-b", Message: "revert written, convergence unknown: timed out"}}}},
			want: PromoteSites{Batch: 1, Sites: []string{"c"}}, phase: WavePromote, verdicts: "a=Healthy b=Reverted c=Pending"},
		{name: "a failed convergence wait fails the wave", state: testWave(rollout.FailureBudget{}),
			events: []WaveEvent{WaveStarted{At: t0}, promotion("a", "b"), StepFailed{At: at(2 * time.Minute), Message: "wait for a, b to converge in wave eu: timed out"}},
			want:   FinishWave{State: rollout.StateFailed, Reason: "wait for a, b to converge in wave eu: timed out"}, phase: WaveDone},

		// Bake.
		{name: "the last batch converged starts the bake", state: testWave(rollout.FailureBudget{}), events: toBake,
			want: ObserveHealth{Sites: []string{"a", "b", "c"}}, phase: WaveBake, state2: rollout.StateBaking, verdicts: "a=Healthy b=Healthy c=Healthy",
			check: func(t *testing.T, r Wave) {
				if !r.Status.ConvergedAt.Equal(at(4*time.Minute)) || !r.Status.BakeUntil.Equal(at(14*time.Minute)) {
					t.Errorf("converged %s, bake until %s", r.Status.ConvergedAt, r.Status.BakeUntil)
				}
			}},
		{name: "a healthy round sleeps until the next", state: baking(rollout.FailureBudget{}), events: []WaveEvent{allHealthy},
			want: SleepUntil{At: at(6 * time.Minute)}, phase: WaveBake, state2: rollout.StateBaking},
		{name: "the last sleep ends with the bake", state: baking(rollout.FailureBudget{}), events: []WaveEvent{round(13*time.Minute+30*time.Second, healthy("a", "p-a"))},
			want: SleepUntil{At: at(14 * time.Minute)}, phase: WaveBake},
		{name: "a tick starts a round", state: baking(rollout.FailureBudget{}), events: []WaveEvent{allHealthy, WaveTick{At: at(6 * time.Minute)}},
			want: ObserveHealth{Sites: []string{"a", "b", "c"}}, phase: WaveBake},
		{name: "a healthy round after the bake succeeds", state: baking(rollout.FailureBudget{}), events: []WaveEvent{round(14*time.Minute, healthy("a", "p-a"), healthy("b", "p-b"), healthy("c", "p-c"))},
			want: FinishWave{State: rollout.StateSucceeded}, phase: WaveDone, state2: rollout.StateSucceeded},
		{name: "pause while baking holds after the bake", state: baking(rollout.FailureBudget{}),
			events: []WaveEvent{allHealthy, WaveControl{At: at(5 * time.Minute), Action: ControlPause}, round(14*time.Minute, healthy("a", "p-a"))},
			want:   HoldPaused{}, phase: WaveBake, state2: rollout.StatePaused},
		{name: "pause while baking does not stop the rounds", state: baking(rollout.FailureBudget{}),
			events: []WaveEvent{allHealthy, WaveControl{At: at(5 * time.Minute), Action: ControlPause}},
			want:   nil, phase: WaveBake},
		{name: "resume after the bake succeeds", state: baking(rollout.FailureBudget{}),
			events: []WaveEvent{WaveControl{At: at(5 * time.Minute), Action: ControlPause}, round(14*time.Minute, healthy("a", "p-a")), WaveControl{At: at(20 * time.Minute), Action: ControlResume}},
			want:   FinishWave{State: rollout.StateSucceeded}, phase: WaveDone, state2: rollout.StateSucceeded},
		{name: "abort while baking ends the wave at once", state: baking(rollout.FailureBudget{}),
			events: []WaveEvent{allHealthy, WaveControl{At: at(5 * time.Minute), Action: ControlAbort}},
			want:   FinishWave{State: rollout.StateAborted}, phase: WaveDone, state2: rollout.StateAborted, verdicts: "a=Healthy b=Healthy c=Healthy"},
		{name: "one failed round is not yet degraded", state: baking(rollout.FailureBudget{}), events: []WaveEvent{round(5*time.Minute, failing("b", "p-b"))},
			want: SleepUntil{At: at(6 * time.Minute)}, phase: WaveBake, verdicts: "a=Healthy b=Healthy c=Healthy"},
		{name: "failureThreshold rounds in a row degrade and fail the wave", state: baking(rollout.FailureBudget{}),
			events: []WaveEvent{round(5*time.Minute, failing("b", "p-b")), round(6*time.Minute, failing("b", "p-b"))},
			want:   FinishWave{State: rollout.StateFailed, Reason: "site b degraded in wave eu: check error-rate failed (value 0.2, want <= 0.01), 2 times in a row"},
			phase:  WaveDone, state2: rollout.StateFailed, verdicts: "a=Healthy b=Degraded c=Healthy"},
		{name: "two sites degrading in one round are named together", state: baking(rollout.FailureBudget{}),
			events: []WaveEvent{round(5*time.Minute, failing("a", "p-a"), failing("c", "p-c")), round(6*time.Minute, failing("a", "p-a"), failing("c", "p-c"))},
			want:   FinishWave{State: rollout.StateFailed, Reason: "sites a, c degraded in wave eu: a: check error-rate failed (value 0.2, want <= 0.01), 2 times in a row"},
			phase:  WaveDone},
		{name: "unreachable past unknownTimeout fails closed", state: baking(rollout.FailureBudget{}),
			events: []WaveEvent{round(5*time.Minute, rollout.SiteState{Site: "c", Message: "no route"}), round(8*time.Minute, rollout.SiteState{Site: "c", Message: "no route"})},
			want:   FinishWave{State: rollout.StateFailed, Reason: "site c degraded in wave eu: unreachable for 3m0s (unknownTimeout 3m0s): no route"},
			phase:  WaveDone},
		{name: "a failed round fails the wave", state: baking(rollout.FailureBudget{}), events: []WaveEvent{StepFailed{At: at(5 * time.Minute), Message: "check health of wave eu: boom"}},
			want: FinishWave{State: rollout.StateFailed, Reason: "check health of wave eu: boom"}, phase: WaveDone},

		// The failure budget.
		{name: "a degraded site within the budget is reverted alone", state: baking(rollout.FailureBudget{Count: 1}),
			events: []WaveEvent{round(5*time.Minute, failing("b", "p-b")), round(6*time.Minute, failing("b", "p-b"))},
			want:   RevertSites{Sites: []string{"b"}, Reason: "site b degraded in wave eu: check error-rate failed (value 0.2, want <= 0.01), 2 times in a row; within the failure budget (1 of 1)"},
			phase:  WaveReverting},
		{name: "after a budgeted revert the bake goes on without the site", state: baking(rollout.FailureBudget{Count: 1}),
			events: []WaveEvent{round(5*time.Minute, failing("b", "p-b")), round(6*time.Minute, failing("b", "p-b")),
				SitesReverted{At: at(7 * time.Minute), Sites: []Reversion{{Site: "b", Revert: "r-b", Converged: true, State: healthy("b", "r-b")}}},
				WaveTick{At: at(8 * time.Minute)}},
			want: ObserveHealth{Sites: []string{"a", "c"}}, phase: WaveBake, verdicts: "a=Healthy b=Reverted c=Healthy"},
		{name: "a wave with budgeted reverts succeeds and says so", state: baking(rollout.FailureBudget{Percent: 50}),
			events: []WaveEvent{round(5*time.Minute, failing("b", "p-b")), round(6*time.Minute, failing("b", "p-b")),
				SitesReverted{At: at(7 * time.Minute), Sites: []Reversion{{Site: "b", Revert: "r-b", Converged: true}}},
				round(14*time.Minute, healthy("a", "p-a"), healthy("c", "p-c"))},
			want: FinishWave{State: rollout.StateSucceeded}, phase: WaveDone, state2: rollout.StateSucceeded,
			check: func(t *testing.T, r Wave) {
				if r.Status.Message != "1 site reverted within the failure budget (maxFailures 50%)" {
					t.Errorf("message %q", r.Status.Message)
				}
			}},
		{name: "the site past the budget fails the wave", state: baking(rollout.FailureBudget{Count: 1}),
			events: []WaveEvent{round(5*time.Minute, failing("b", "p-b")), round(6*time.Minute, failing("b", "p-b")),
				SitesReverted{At: at(7 * time.Minute), Sites: []Reversion{{Site: "b", Revert: "r-b", Converged: true}}},
				round(8*time.Minute, failing("a", "p-a")), round(9*time.Minute, failing("a", "p-a"))},
			want:  FinishWave{State: rollout.StateFailed, Reason: "site a degraded in wave eu: check error-rate failed (value 0.2, want <= 0.01), 2 times in a row"},
			phase: WaveDone, verdicts: "a=Degraded b=Reverted c=Healthy",
			check: func(t *testing.T, r Wave) {
				if diff := cmp.Diff([]string{"b", "a"}, r.Failed); diff != "" {
					t.Errorf("failed sites (-want +got):\n%s", diff)
				}
			}},
		{name: "two sites at once past the budget fail the wave", state: baking(rollout.FailureBudget{Count: 1}),
			events: []WaveEvent{round(5*time.Minute, failing("a", "p-a"), failing("b", "p-b")), round(6*time.Minute, failing("a", "p-a"), failing("b", "p-b"))},
			want:   FinishWave{State: rollout.StateFailed, Reason: "sites a, b degraded in wave eu: a: check error-rate failed (value 0.2, want <= 0.01), 2 times in a row"},
			phase:  WaveDone},
		{name: "without automatic rollback a budgeted site is left degraded", state: func() Wave { r := baking(rollout.FailureBudget{Count: 1}); r.Automatic = false; return r }(),
			events: []WaveEvent{round(5*time.Minute, failing("b", "p-b")), round(6*time.Minute, failing("b", "p-b"))},
			want:   SleepUntil{At: at(7 * time.Minute)}, phase: WaveBake, verdicts: "a=Healthy b=Degraded c=Healthy"},
		{name: "a control during a budgeted revert waits for it", state: baking(rollout.FailureBudget{Count: 1}),
			events: []WaveEvent{round(5*time.Minute, failing("b", "p-b")), round(6*time.Minute, failing("b", "p-b")), WaveControl{At: at(6 * time.Minute), Action: ControlAbort}},
			want:   nil, phase: WaveReverting},
		{name: "abort during a budgeted revert ends the wave after it", state: baking(rollout.FailureBudget{Count: 1}),
			events: []WaveEvent{round(5*time.Minute, failing("b", "p-b")), round(6*time.Minute, failing("b", "p-b")), WaveControl{At: at(6 * time.Minute), Action: ControlAbort},
				SitesReverted{At: at(7 * time.Minute), Sites: []Reversion{{Site: "b", Revert: "r-b", Converged: true}}}},
			want: FinishWave{State: rollout.StateAborted}, phase: WaveDone, verdicts: "a=Healthy b=Reverted c=Healthy"},

		// Done.
		{name: "events after the end change nothing", state: baking(rollout.FailureBudget{}),
			events: []WaveEvent{WaveControl{At: at(5 * time.Minute), Action: ControlAbort}, WaveControl{At: at(6 * time.Minute), Action: ControlResume}},
			want:   nil, phase: WaveDone, state2: rollout.StateAborted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, c := step(tt.state, tt.events...)
			if diff := cmp.Diff(tt.want, c); diff != "" {
				t.Errorf("command (-want +got):\n%s", diff)
			}
			if r.Phase != tt.phase {
				t.Errorf("phase %s, want %s", r.Phase, tt.phase)
			}
			if tt.state2 != "" && r.Status.State != tt.state2 {
				t.Errorf("wave state %s, want %s", r.Status.State, tt.state2)
			}
			if tt.verdicts != "" && verdicts(r) != tt.verdicts {
				t.Errorf("verdicts %s, want %s", verdicts(r), tt.verdicts)
			}
			if tt.check != nil {
				tt.check(t, r)
			}
		})
	}
}

// TestNextWaveLeavesItsInputAlone: NextWave returns a new state; the one it was given (which
// a workflow may still hold) does not change.
func TestNextWaveLeavesItsInputAlone(t *testing.T) {
	r := baking(rollout.FailureBudget{})
	before := verdicts(r)
	_, _, _ = r.Next(round(5*time.Minute, failing("b", "p-b")))
	_, _, _ = r.Next(round(6*time.Minute, rollout.SiteState{Site: "a"}))
	if verdicts(r) != before || r.Site("b").Failures != 0 || !r.Site("a").UnknownSince.IsZero() {
		t.Errorf("input changed: %s, b failures %d", verdicts(r), r.Site("b").Failures)
	}
}

// TestBackFromUnknownIsJudgedAfresh: a site that failed a round, then could not be measured,
// then failed once more has not failed "2 rounds in a row" (failureThreshold 2): the rounds
// before it went away do not count, when the workflow asks for it (Afresh).
func TestBackFromUnknownIsJudgedAfresh(t *testing.T) {
	down := rollout.SiteState{Site: "a", Message: "connection refused"}
	events := []WaveEvent{round(5*time.Minute, failing("a", "p-a"), healthy("b", "p-b"), healthy("c", "p-c")), WaveTick{At: at(6 * time.Minute)},
		round(6*time.Minute, down, healthy("b", "p-b"), healthy("c", "p-c")), WaveTick{At: at(7 * time.Minute)},
		round(7*time.Minute, failing("a", "p-a"), healthy("b", "p-b"), healthy("c", "p-c"))}
	r := baking(rollout.FailureBudget{})
	r.Afresh = true
	r, c := step(r, events...)
	if s := r.Site("a"); s.Verdict != rollout.VerdictHealthy || s.Failures != 1 {
		t.Errorf("afresh: site a %s with %d failures (command %T), want Healthy with 1", s.Verdict, s.Failures, c)
	}
	// Without Afresh (waves recorded before it): the streak went on, and a degraded.
	r, _ = step(baking(rollout.FailureBudget{}), events...)
	if s := r.Site("a"); s.Verdict != rollout.VerdictDegraded {
		t.Errorf("as before: site a %s, want Degraded", s.Verdict)
	}
}

// TestCountAgreesInNumber: every count the summaries and messages print agrees with its noun.
func TestCountAgreesInNumber(t *testing.T) {
	for _, c := range []struct {
		n    int
		noun string
		want string
	}{
		{0, "site", "0 sites"}, {1, "site", "1 site"}, {2, "site", "2 sites"}, {1, "push", "1 push"}, {3, "push", "3 pushes"},
		{2, "fault", "2 faults"}, {1, "time", "1 time"}, {4, "time", "4 times"}, {2, "batch", "2 batches"},
	} {
		if got := rollout.Count(c.n, c.noun); got != c.want {
			t.Errorf("Count(%d, %q) = %q, want %q", c.n, c.noun, got, c.want)
		}
	}
	if got := rollout.SitesLabel([]string{"ams-1"}); got != "1 site (ams-1)" {
		t.Errorf("SitesLabel of one site: %q", got)
	}
}

// TestMissingBranchIsOneSitesFailure: a site whose branch does not exist is not promoted; it
// degrades against the wave's failure budget and the batch's other sites go on; past the
// budget the wave fails naming it.
func TestMissingBranchIsOneSitesFailure(t *testing.T) {
	missing := promotion("a", "b")
	missing.Sites[0] = Promotion{Site: "a", Problem: "site branch sites/a does not exist; create it from the source branch first"}
	w, c := step(testWave(rollout.FailureBudget{Count: 1}), WaveStarted{At: t0}, missing)
	if got, ok := c.(AwaitConvergence); !ok || len(got.Sites) != 1 || got.Sites[0].Site != "b" {
		t.Fatalf("within the budget: %#v, want the wait for b alone", c)
	}
	if a := w.Site("a"); a.Verdict != rollout.VerdictDegraded || a.Promoted || !strings.HasPrefix(a.Message, "not promoted: site branch sites/a does not exist") {
		t.Errorf("site a: %+v", a)
	}
	_, c = step(testWave(rollout.FailureBudget{}), WaveStarted{At: t0}, missing)
	if f, ok := c.(FinishWave); !ok || f.State != rollout.StateFailed || !strings.HasPrefix(f.Reason, "site a degraded in wave eu: not promoted: site branch sites/a does not exist") {
		t.Errorf("past the budget: %#v", c)
	}
	// A batch of which no site could be promoted goes on with the next one.
	alone := BatchPromoted{At: at(time.Minute), Sites: []Promotion{{Site: "a", Problem: "no branch"}, {Site: "b", Problem: "no branch"}}}
	_, c = step(testWave(rollout.FailureBudget{Count: 2}), WaveStarted{At: t0}, alone)
	if p, ok := c.(PromoteSites); !ok || p.Batch != 1 {
		t.Errorf("nothing of the batch promoted: %#v, want the next batch", c)
	}
}
