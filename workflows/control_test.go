package workflows

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/fleetwave/fleetwave/activities"
	"github.com/fleetwave/fleetwave/rollout"
)

// controlAt sends a control update at workflow time d after the start and records the answer.
type answer struct {
	accepted bool
	err      error
	result   ControlResult
}

func controlAt(env *testsuite.TestWorkflowEnvironment, d time.Duration, action string, got *answer) {
	env.RegisterDelayedCallback(func() {
		env.UpdateWorkflow(action, action+d.String(), &testsuite.TestUpdateCallback{
			OnAccept: func() { got.accepted = true },
			OnReject: func(err error) { got.err = err },
			OnComplete: func(v any, err error) {
				if err != nil {
					got.err = err
					return
				}
				got.result = v.(ControlResult)
			},
		}, ControlInput{By: "U012ABC", Reason: "testing " + action})
	}, d)
}

func runStopped(t *testing.T, env *testsuite.TestWorkflowEnvironment) rollout.Status {
	t.Helper()
	env.ExecuteWorkflow(Rollout, RolloutInput{Fleet: "demo", Commit: testCommit})
	var app *temporal.ApplicationError
	if !errors.As(env.GetWorkflowError(), &app) || app.Type() != ErrTypeRolloutAborted {
		t.Fatalf("workflow error %v, want %s", env.GetWorkflowError(), ErrTypeRolloutAborted)
	}
	var st rollout.Status
	if err := app.Details(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestPauseHoldsTheNextWaveUntilResume(t *testing.T) {
	env := newEnv(t)
	f := newFakeFleet(t, env, testPlan(t, "wave", ""))
	start := env.Now()
	var pause, resume answer
	controlAt(env, 5*time.Minute, UpdatePause, &pause)
	var during rollout.Status
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(QueryStatus)
		if err != nil {
			t.Error(err)
			return
		}
		_ = v.Get(&during)
	}, time.Hour)
	controlAt(env, 2*time.Hour, UpdateResume, &resume)
	st, err := run(t, env)
	if err != nil {
		t.Fatalf("rollout failed: %v", err)
	}
	if !pause.accepted || pause.result.State != rollout.StatePaused || !strings.Contains(pause.result.Message, "paused") {
		t.Errorf("pause: %+v", pause)
	}
	if !resume.accepted || resume.err != nil {
		t.Errorf("resume: %+v", resume)
	}
	if during.State != rollout.StatePaused || during.Wave != "canary" {
		t.Errorf("status while paused: %s in wave %s", during.State, during.Wave)
	}
	p := f.callsOf("promote")
	if got := p[1].At.Sub(start); got < 2*time.Hour {
		t.Errorf("wave eu started %s after the start, while paused until 2h", got)
	}
	if st.State != rollout.StateSucceeded || len(st.Controls) != 2 || st.Controls[0].By != "U012ABC" {
		t.Errorf("status %s, controls %+v", st.State, st.Controls)
	}
	// The canary kept its health rounds while paused (11 rounds over its 10m bake), then held
	// until the resume.
	rounds := 0
	for _, c := range f.callsOf("observe") {
		if c.Sites[0] == "ams-1" && c.At.Sub(start) <= 10*time.Minute {
			rounds++
		}
	}
	if rounds != 11 {
		t.Errorf("canary health rounds during its bake while paused = %d, want 11", rounds)
	}
	if d := st.Waves[0].FinishedAt.Sub(start); d < 2*time.Hour {
		t.Errorf("canary wave finished %s after start, want it held until the resume at 2h", d)
	}
}

func TestControlValidators(t *testing.T) {
	env := newEnv(t)
	newFakeFleet(t, env, testPlan(t, "wave", ""))
	var early, pause, again, resume answer
	controlAt(env, time.Minute, UpdateResume, &early)
	controlAt(env, 2*time.Minute, UpdatePause, &pause)
	controlAt(env, 3*time.Minute, UpdatePause, &again)
	controlAt(env, 4*time.Minute, UpdateResume, &resume)
	st, err := run(t, env)
	if err != nil {
		t.Fatal(err)
	}
	if early.accepted || early.err == nil || !strings.Contains(early.err.Error(), "is not paused") {
		t.Errorf("resume of a running rollout: %+v", early)
	}
	if again.accepted || again.err == nil || !strings.Contains(again.err.Error(), "already paused") {
		t.Errorf("second pause: %+v", again)
	}
	if !pause.accepted || !resume.accepted {
		t.Errorf("pause %+v resume %+v", pause, resume)
	}
	// Refused updates leave no trace in the status.
	if len(st.Controls) != 2 {
		t.Errorf("controls %+v, want the two accepted ones", st.Controls)
	}
}

func TestAbortLeavesSitesAsTheyAre(t *testing.T) {
	env := newEnv(t)
	f := newFakeFleet(t, env, testPlan(t, "wave", ""))
	var abort answer
	controlAt(env, 15*time.Minute, UpdateAbort, &abort)
	st := runStopped(t, env)
	if !abort.accepted || !strings.Contains(abort.result.Message, "aborting") {
		t.Errorf("abort: %+v", abort)
	}
	if diff := cmp.Diff([][]string{{"ams-1"}, {"ams-2", "fra-1"}, {"fra-2"}}, sitesOf(f.callsOf("promote"))); diff != "" {
		t.Errorf("promotions (-want +got):\n%s", diff)
	}
	if n := len(f.callsOf("revert")); n != 0 {
		t.Errorf("%d reverts after abort, want none", n)
	}
	if st.State != rollout.StateAborted || st.Waves[1].State != rollout.StateAborted || st.Waves[2].State != rollout.StatePending {
		t.Errorf("states: rollout %s, eu %s, fleet %s", st.State, st.Waves[1].State, st.Waves[2].State)
	}
	if !strings.Contains(st.Reason, "aborted by U012ABC: testing abort") {
		t.Errorf("reason %q", st.Reason)
	}
	for _, s := range st.Waves[1].Sites {
		if s.Verdict != rollout.VerdictHealthy {
			t.Errorf("site %s verdict %s after abort, want its last verdict", s.Name, s.Verdict)
		}
	}
	// Anything after the end is refused.
}

func TestRollbackRevertsEveryPromotedSite(t *testing.T) {
	env := newEnv(t)
	f := newFakeFleet(t, env, strings.Replace(testPlan(t, "site", ""), "{scope: site}", "{automatic: false, scope: site}", 1))
	var rb answer
	controlAt(env, 15*time.Minute, UpdateRollback, &rb)
	st := runStopped(t, env)
	if !rb.accepted {
		t.Errorf("rollback: %+v", rb)
	}
	// Break-glass: all promoted sites, newest wave first, whatever rollback says in the plan.
	if diff := cmp.Diff([][]string{{"ams-2", "fra-1", "fra-2"}, {"ams-1"}}, sitesOf(f.callsOf("revert"))); diff != "" {
		t.Errorf("reverts (-want +got):\n%s", diff)
	}
	if st.State != rollout.StateRolledBack || !strings.Contains(st.Reason, "rolled back by U012ABC") {
		t.Errorf("state %s reason %q", st.State, st.Reason)
	}
	if diff := cmp.Diff([][]string{{"ams-1"}, {"ams-2", "fra-1"}, {"fra-2"}}, sitesOf(f.callsOf("promote"))); diff != "" {
		t.Errorf("promotions (-want +got):\n%s", diff)
	}
}

func TestPausedRolloutStillRevertsADegradedSite(t *testing.T) {
	env := newEnv(t)
	f := newFakeFleet(t, env, testPlan(t, "wave", ""))
	f.degraded["ams-1"] = true
	var pause answer
	controlAt(env, 30*time.Second, UpdatePause, &pause)
	_, err := run(t, env)
	if err == nil || !strings.Contains(err.Error(), "site ams-1 degraded") {
		t.Fatalf("err = %v", err)
	}
	if !pause.accepted {
		t.Errorf("pause: %+v", pause)
	}
	if diff := cmp.Diff([][]string{{"ams-1"}}, sitesOf(f.callsOf("revert"))); diff != "" {
		t.Errorf("reverts while paused (-want +got):\n%s", diff)
	}
}

// abortedAt3m runs the rollout with an abort three minutes in, and checks that the abort was
// taken and ended the rollout and its canary well before ten minutes: before what the canary
// was waiting for (what, in the message).
func abortedAt3m(t *testing.T, env *testsuite.TestWorkflowEnvironment, what string) rollout.Status {
	t.Helper()
	start := env.Now()
	var abort answer
	controlAt(env, 3*time.Minute, UpdateAbort, &abort)
	st := runStopped(t, env)
	if !abort.accepted {
		t.Fatalf("abort: %+v", abort)
	}
	if st.State != rollout.StateAborted || st.Waves[0].State != rollout.StateAborted {
		t.Fatalf("rollout %s, canary %s (%s); want both aborted", st.State, st.Waves[0].State, st.Waves[0].Message)
	}
	if took := st.FinishedAt.Sub(start); took >= 10*time.Minute {
		t.Errorf("the rollout ended %s after its start: the abort waited for %s", took, what)
	}
	return st
}

// TestAbortCancelsAConvergenceWait: the canary takes ten minutes to converge; an abort three
// minutes in ends the wave and the rollout then, instead of after the wait, and nothing is
// judged or reverted.
func TestAbortCancelsAConvergenceWait(t *testing.T) {
	env := newEnv(t)
	f := newFakeFleet(t, env, testPlan(t, "wave", ""))
	f.converge.After(10 * time.Minute)
	st := abortedAt3m(t, env, "the convergence")
	if s := st.Waves[0].Sites[0]; !s.Promoted || s.Verdict == rollout.VerdictDegraded || len(f.callsOf("revert")) != 0 {
		t.Errorf("canary site %+v, reverts %v: want it promoted, not judged, nothing reverted", s, f.callsOf("revert"))
	}
}

// TestAbortCancelsAPushInFlight: the git server applies the canary's push and then fails the
// request, again and again (30 minutes of retries). An abort three minutes in cancels the
// promotion; the wave reads from git that the push landed, and the rollout ends aborted with
// the canary promoted: nothing lost, nothing waited for.
func TestAbortCancelsAPushInFlight(t *testing.T) {
	env := newEnv(t)
	f := newFakeFleet(t, env, testPlan(t, "wave", ""))
	f.promoteCall.Return(func(ctx context.Context, in activities.PromoteInput) (activities.ChangeResult, error) {
		if _, err := f.promote(ctx, in); err != nil {
			return activities.ChangeResult{}, err
		}
		return activities.ChangeResult{}, errors.New("git push: connection reset by peer")
	})
	st := abortedAt3m(t, env, "the retries")
	if s := st.Waves[0].Sites[0]; !s.Promoted || s.Promotion != "promo-ams-1" {
		t.Errorf("canary site %+v: want it promoted with promo-ams-1, read from git after the cancel", s)
	}
	if n := len(f.callsOf("landed")); n != 1 || len(f.callsOf("revert")) != 0 {
		t.Errorf("landed read %d times, reverts %v: want one read and no revert (an abort leaves sites as they are)", n, f.callsOf("revert"))
	}
	if n := len(f.callsOf("promote")); n < 3 || n > 10 {
		t.Errorf("%d promotion attempts in 3 minutes, want the retries with backoff, cut by the abort", n)
	}
}
