package runbook

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fleetwave/fleetwave/rollout"
)

// evidenceWave is testWave with the gates of an Evidence wave and the given bake.
func evidenceWave(budget rollout.FailureBudget, bake time.Duration) Wave {
	r := testWave(budget)
	r.Wave.Bake = bake
	r.Evidence = true
	return r
}

func unknown(site string) rollout.SiteState {
	return rollout.SiteState{Site: site, Reachable: true, Ready: true, Revision: rollout.FormatRevision("sites/"+site, "p-"+site),
		Checks: []rollout.CheckResult{{Name: "error-rate", Unknown: true, Message: "dial tcp 127.0.0.1:9: connection refused"}}}
}

// drive answers every command of the wave's runbook from the scripted world until the wave
// finishes or limit commands ran: sites converge as converge says (nil: at once), and health
// rounds see what health says of a site at a time. It returns the final state, the commands in
// order, and the last command.
type world struct {
	// converge: whether site has applied commit by now.
	converge func(site, commit string, now time.Time) bool
	// health: what a health round sees of the site at now.
	health func(site string, now time.Time) rollout.SiteState
	// roundTakes is how long a health round takes.
	roundTakes time.Duration
}

func (w world) drive(t *testing.T, r Wave, limit int) (Wave, []WaveStep) {
	t.Helper()
	now := t0
	var cmds []WaveStep
	var c WaveStep
	r, c, _ = r.Next(WaveStarted{At: now})
	for range limit {
		cmds = append(cmds, c)
		var e WaveEvent
		switch c := c.(type) {
		case FinishWave:
			return r, cmds
		case PromoteSites:
			now = now.Add(10 * time.Second)
			ev := BatchPromoted{At: now}
			for _, s := range c.Sites {
				ev.Sites = append(ev.Sites, Promotion{Site: s, Commit: "p-" + s, Ours: true})
			}
			e = ev
		case AwaitConvergence:
			// Poll every 10s until every site converged or the deadline.
			for {
				ev := SitesConverged{At: now}
				all := true
				for _, x := range c.Sites {
					ok := w.converge == nil || w.converge(x.Site, x.Commit, now)
					all = all && ok
					ev.Sites = append(ev.Sites, Convergence{Site: x.Site, Converged: ok, State: rollout.SiteState{Site: x.Site, Reachable: true}})
				}
				if all {
					e = ev
					break
				}
				if !now.Before(c.Deadline) {
					ev.TimedOut = true
					e = ev
					break
				}
				now = minTime(now.Add(10*time.Second), c.Deadline)
			}
		case ObserveHealth:
			now = now.Add(w.roundTakes)
			ev := HealthObserved{At: now}
			for _, s := range c.Sites {
				ev.States = append(ev.States, w.health(s, now))
			}
			e = ev
		case SleepUntil:
			if c.At.After(now) {
				now = c.At
			}
			e = WaveTick{At: now}
		case HoldPaused:
			if c.Until.IsZero() {
				t.Fatalf("held for a control nobody sends, at %s", now.Sub(t0))
			}
			if c.Until.After(now) {
				now = c.Until
			}
			e = WaveTick{At: now}
		case RevertSites:
			now = now.Add(10 * time.Second)
			ev := SitesReverted{At: now}
			for _, s := range c.Sites {
				ev.Sites = append(ev.Sites, Reversion{Site: s, Revert: "r-" + s, Head: "r-" + s})
			}
			e = ev
		default:
			t.Fatalf("unexpected command %T", c)
		}
		r, c, _ = r.Next(e)
	}
	t.Fatalf("the wave did not finish in %d commands; last %#v", limit, c)
	return r, cmds
}

func healthyWorld() world {
	return world{health: func(site string, now time.Time) rollout.SiteState { return healthy(site, "p-"+site) }, roundTakes: time.Second}
}

// TestEvidenceZeroBakeIsOneCleanRound: bake 0 is one clean round, never no check.
func TestEvidenceZeroBakeIsOneCleanRound(t *testing.T) {
	r, cmds := healthyWorld().drive(t, evidenceWave(rollout.FailureBudget{}, 0), 100)
	if r.Status.State != rollout.StateSucceeded {
		t.Fatalf("healthy sites: wave %s (%s), want Succeeded", r.Status.State, r.Status.Message)
	}
	if n := count[ObserveHealth](cmds); n != 1 {
		t.Errorf("%d health rounds, want 1 (the clean round that passes the wave)", n)
	}

	// A site failing: its streak runs out after the bake and the wave fails (the old wave
	// succeeded here with "Healthy (1 of 2 failures in a row)").
	w := healthyWorld()
	w.health = func(site string, now time.Time) rollout.SiteState {
		if site == "a" {
			return failing(site, "p-"+site)
		}
		return healthy(site, "p-"+site)
	}
	r, cmds = w.drive(t, evidenceWave(rollout.FailureBudget{}, 0), 100)
	if r.Status.State != rollout.StateFailed || !strings.Contains(r.Reason, "site a degraded") || r.Site("a").Verdict != rollout.VerdictDegraded {
		t.Fatalf("failing canary with bake 0: wave %s (%s), a %s", r.Status.State, r.Reason, r.Site("a").Verdict)
	}
	if n := count[ObserveHealth](cmds); n != 2 {
		t.Errorf("%d health rounds, want 2 (failureThreshold)", n)
	}

	// The same under the old gates passes: the versioned behaviour is kept for old histories.
	old := evidenceWave(rollout.FailureBudget{}, 0)
	old.Evidence = false
	r, _ = w.drive(t, old, 100)
	if r.Status.State != rollout.StateSucceeded {
		t.Errorf("without Evidence, wave %s: the recorded behaviour changed", r.Status.State)
	}
}

// TestEvidenceUnknownFailsClosed: a check that can never be measured makes every site Unknown;
// the wave, whose bake is shorter than unknownTimeout, fails after unknownTimeout.
func TestEvidenceUnknownFailsClosed(t *testing.T) {
	w := world{health: func(site string, now time.Time) rollout.SiteState { return unknown(site) }, roundTakes: time.Second}
	r, _ := w.drive(t, evidenceWave(rollout.FailureBudget{}, time.Minute), 100)
	if r.Status.State != rollout.StateFailed || !strings.Contains(r.Reason, "unknown for") {
		t.Fatalf("wave %s (%s), want Failed for the unknown check", r.Status.State, r.Reason)
	}
	if end := r.Status.FinishedAt.Sub(r.Status.ConvergedAt); end < r.Health.UnknownTimeout || end > r.Health.UnknownTimeout+2*r.Health.Interval {
		t.Errorf("failed %s after convergence, want about unknownTimeout (%s)", end, r.Health.UnknownTimeout)
	}
}

// TestEvidenceStreakAtBakeEnd: a site in the middle of a failure streak when the bake ends is
// observed until it is decided: clean again passes it.
func TestEvidenceStreakAtBakeEnd(t *testing.T) {
	r := evidenceWave(rollout.FailureBudget{}, 2*time.Minute)
	r, c := step(r, toBake...)
	if diff := cmp.Diff(ObserveHealth{Sites: []string{"a", "b", "c"}}, c); diff != "" {
		t.Fatalf("bake start (-want +got):\n%s", diff)
	}
	r, c = step(r, round(4*time.Minute, healthy("a", "p-a"), healthy("b", "p-b"), healthy("c", "p-c")), WaveTick{At: at(5 * time.Minute)},
		round(5*time.Minute, healthy("a", "p-a"), healthy("b", "p-b"), healthy("c", "p-c")), WaveTick{At: at(6 * time.Minute)},
		round(6*time.Minute, healthy("a", "p-a"), failing("b", "p-b"), healthy("c", "p-c")))
	if diff := cmp.Diff(SleepUntil{At: at(7 * time.Minute)}, c); diff != "" {
		t.Fatalf("bake over with b failing once (-want +got):\n%s", diff)
	}
	if r.Status.State != rollout.StateBaking || !strings.Contains(r.Status.Message, "waiting for 1 site (b) to pass a clean round") {
		t.Errorf("status %s %q", r.Status.State, r.Status.Message)
	}
	r, c = step(r, WaveTick{At: at(7 * time.Minute)}, round(7*time.Minute, healthy("a", "p-a"), healthy("b", "p-b"), healthy("c", "p-c")))
	if diff := cmp.Diff(FinishWave{State: rollout.StateSucceeded}, c); diff != "" || r.Status.Message != "" {
		t.Errorf("b clean again (-want +got):\n%s\nmessage %q", diff, r.Status.Message)
	}
}

// TestEvidenceRoundsWhileLaterBatchesConverge: the sites of the first batch are observed while
// the second converges, and one failing there fails the wave before the bake.
func TestEvidenceRoundsWhileLaterBatchesConverge(t *testing.T) {
	w := healthyWorld()
	w.converge = func(site, commit string, now time.Time) bool { return site != "c" || !now.Before(at(5*time.Minute)) }
	w.health = func(site string, now time.Time) rollout.SiteState {
		if site == "a" && now.After(at(2*time.Minute)) {
			return failing(site, "p-"+site)
		}
		return healthy(site, "p-"+site)
	}
	r, cmds := w.drive(t, evidenceWave(rollout.FailureBudget{}, 10*time.Minute), 200)
	if r.Status.State != rollout.StateFailed || !strings.Contains(r.Reason, "site a degraded") {
		t.Fatalf("wave %s (%s), want Failed for a", r.Status.State, r.Reason)
	}
	if !r.Status.ConvergedAt.IsZero() {
		t.Errorf("the wave reached its bake (%s): a's failure went unseen while c converged", r.Status.ConvergedAt)
	}
	if n := count[ObserveHealth](cmds); n < 2 {
		t.Errorf("%d rounds while c converged", n)
	}
}

// TestEvidenceBudgetedRevertDoesNotBlind: the rehearsal on the runbook. Four sites in
// one batch, maxFailures 1; u is unreachable from 2m and reverted within the budget; its revert
// never applies (it is unreachable), and meanwhile d degrades from 8m: the wave fails for d.
func TestEvidenceBudgetedRevertDoesNotBlind(t *testing.T) {
	w := rollout.Wave{Name: "all", Sites: []string{"a", "u", "d", "b"}, MaxParallel: 4, Bake: 15 * time.Minute, MaxFailures: rollout.FailureBudget{Count: 1}}
	h := rollout.Health{ConvergenceTimeout: 10 * time.Minute, Interval: 30 * time.Second, FailureThreshold: 3, UnknownTimeout: 5 * time.Minute}
	st := rollout.WaveStatus{Name: "all", State: rollout.StatePending}
	for _, s := range w.Sites {
		st.Sites = append(st.Sites, rollout.SiteStatus{Name: s, Branch: "sites/" + s, Verdict: rollout.VerdictPending})
	}
	run := NewWave("rollout/demo/abc1234", "abc1234", w, h, true, st)
	run.Evidence = true
	world := world{roundTakes: time.Second,
		converge: func(site, commit string, now time.Time) bool { return site != "u" || strings.HasPrefix(commit, "p-") },
		health: func(site string, now time.Time) rollout.SiteState {
			switch {
			case site == "u" && now.After(at(2*time.Minute)):
				return rollout.SiteState{Site: site, Message: "connection refused"}
			case site == "d" && now.After(at(8*time.Minute)):
				return failing(site, "p-"+site)
			}
			return healthy(site, "p-"+site)
		}}
	r, _ := world.drive(t, run, 2000)
	if r.Status.State != rollout.StateFailed || !strings.Contains(r.Reason, "site d degraded") {
		t.Fatalf("wave %s (%s), want Failed for d", r.Status.State, r.Reason)
	}
	if got := verdicts(r); got != "a=Healthy u=Reverted d=Degraded b=Healthy" {
		t.Errorf("verdicts %s", got)
	}
	if fin := r.Status.FinishedAt.Sub(t0); fin > 10*time.Minute {
		t.Errorf("d failed the wave at %s: it went unwatched while u's revert waited", fin)
	}
}

// TestEvidencePausedWaveIsObserved: a wave paused after its first batch keeps observing it; a
// site failing meanwhile degrades and fails the wave although nobody resumes it.
func TestEvidencePausedWaveIsObserved(t *testing.T) {
	r := evidenceWave(rollout.FailureBudget{}, 10*time.Minute)
	r, c := step(r, WaveStarted{At: t0}, promotion("a", "b"), WaveControl{At: at(time.Minute), Action: ControlPause}, converged(2*time.Minute, "a", "b"))
	if diff := cmp.Diff(HoldPaused{Until: at(3 * time.Minute)}, c); diff != "" {
		t.Fatalf("paused after the first batch (-want +got):\n%s", diff)
	}
	r, c = step(r, WaveTick{At: at(3 * time.Minute)})
	if diff := cmp.Diff(ObserveHealth{Sites: []string{"a", "b"}}, c); diff != "" {
		t.Fatalf("the hold's round (-want +got):\n%s", diff)
	}
	r, c = step(r, round(3*time.Minute, failing("a", "p-a"), healthy("b", "p-b")))
	if diff := cmp.Diff(HoldPaused{Until: at(4 * time.Minute)}, c); diff != "" {
		t.Fatalf("still paused (-want +got):\n%s", diff)
	}
	_, c = step(r, WaveTick{At: at(4 * time.Minute)}, round(4*time.Minute, failing("a", "p-a"), healthy("b", "p-b")))
	if f, ok := c.(FinishWave); !ok || f.State != rollout.StateFailed || !strings.Contains(f.Reason, "site a degraded") {
		t.Errorf("a failing twice while paused: %#v, want the wave failed", c)
	}
}

// TestEvidenceGapExtendsBake: a round that comes late (the worker was down) extends the bake by
// the unobserved time beyond one interval, and the status says so.
func TestEvidenceGapExtendsBake(t *testing.T) {
	r := evidenceWave(rollout.FailureBudget{}, 10*time.Minute)
	all := func(d time.Duration) HealthObserved {
		return round(d, healthy("a", "p-a"), healthy("b", "p-b"), healthy("c", "p-c"))
	}
	r, _ = step(r, toBake...)
	r, c := step(r, all(4*time.Minute), WaveTick{At: at(5 * time.Minute)}, all(5*time.Minute), WaveTick{At: at(11 * time.Minute)}, all(11*time.Minute))
	if r.Extended != 5*time.Minute || !r.Status.BakeUntil.Equal(at(19*time.Minute)) {
		t.Fatalf("extended %s, bake until %s; want 5m (6m without a round, less one interval), until 19m", r.Extended, r.Status.BakeUntil.Sub(t0))
	}
	if !strings.Contains(r.Status.Message, "bake extended by 5m0s") {
		t.Errorf("message %q", r.Status.Message)
	}
	if diff := cmp.Diff(SleepUntil{At: at(12 * time.Minute)}, c); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	// Rounds on time do not extend it.
	for m := 12; m <= 19; m++ {
		r, c = step(r, WaveTick{At: at(time.Duration(m) * time.Minute)}, all(time.Duration(m)*time.Minute))
	}
	if diff := cmp.Diff(FinishWave{State: rollout.StateSucceeded}, c); diff != "" || r.Extended != 5*time.Minute {
		t.Errorf("(-want +got):\n%s\nextended %s", diff, r.Extended)
	}
	if r.Status.Message != "bake extended by 5m0s for missed health rounds" {
		t.Errorf("final message %q", r.Status.Message)
	}
}

// TestEvidenceAbortCutsRevertWait: an abort while a budgeted revert converges ends the wave.
func TestEvidenceAbortCutsRevertWait(t *testing.T) {
	r := evidenceWave(rollout.FailureBudget{Count: 1}, 10*time.Minute)
	r, _ = step(r, toBake...)
	r, c := step(r, round(4*time.Minute, failing("a", "p-a"), healthy("b", "p-b"), healthy("c", "p-c")), WaveTick{At: at(5 * time.Minute)},
		round(5*time.Minute, failing("a", "p-a"), healthy("b", "p-b"), healthy("c", "p-c")))
	if rs, ok := c.(RevertSites); !ok || !rs.WriteOnly {
		t.Fatalf("a degraded within the budget: %#v, want a write-only revert", c)
	}
	r, c = step(r, SitesReverted{At: at(5 * time.Minute), Sites: []Reversion{{Site: "a", Revert: "r-a", Head: "r-a"}}})
	if diff := cmp.Diff(AwaitConvergence{Sites: []Expect{{Site: "a", Commit: "r-a"}}, Deadline: at(5*time.Minute + time.Minute)}, c); diff != "" {
		t.Fatalf("the revert's wait, sliced at the next round (-want +got):\n%s", diff)
	}
	r, c = step(r, StepCancelled{At: at(5*time.Minute + 10*time.Second)})
	if diff := cmp.Diff(FinishWave{State: rollout.StateAborted}, c); diff != "" || r.Site("a").Revert != "r-a" {
		t.Errorf("(-want +got):\n%s\na's revert %q", diff, r.Site("a").Revert)
	}
}

// TestEvidenceRevertApplied: a budgeted revert that applies is recorded as the old one was,
// and the bake goes on.
func TestEvidenceRevertApplied(t *testing.T) {
	w := healthyWorld()
	w.health = func(site string, now time.Time) rollout.SiteState {
		if site == "a" {
			return failing(site, "p-"+site)
		}
		return healthy(site, "p-"+site)
	}
	r, _ := w.drive(t, evidenceWave(rollout.FailureBudget{Count: 1}, 5*time.Minute), 500)
	if r.Status.State != rollout.StateSucceeded || verdicts(r) != "a=Reverted b=Healthy c=Healthy" {
		t.Fatalf("wave %s, %s", r.Status.State, verdicts(r))
	}
	if a := r.Site("a"); a.Message != "reverted within the failure budget: applied r-a" {
		t.Errorf("a: %q", a.Message)
	}
}

func count[T any](cmds []WaveStep) int {
	n := 0
	for _, c := range cmds {
		if _, ok := c.(T); ok {
			n++
		}
	}
	return n
}
