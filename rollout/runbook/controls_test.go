package runbook

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/fleetwave/fleetwave/rollout"
)

// TestControlsReachTheWaveAlike: after any sequence of accepted controls (pause, resume,
// abort, rollback, supersede, and the watch's stop) given while a wave runs, the wave's paused
// and aborted state match the rollout's: the rollout forwards each control it accepts, and the
// wave applies it the same way whatever it is doing (promoting, converging, baking, holding).
func TestControlsReachTheWaveAlike(t *testing.T) {
	actions := []ControlAction{ControlPause, ControlResume, ControlAbort, ControlRollback, ControlSupersede, ControlAction(rollout.StopWatch)}
	// Where the wave may stand when the controls come.
	stands := [][]WaveEvent{
		{WaveStarted{At: t0}},
		{WaveStarted{At: t0}, promotion("a", "b")},
		toBake,
		append(append([]WaveEvent(nil), toBake...), round(5*time.Minute, healthy("a", "p-a"), healthy("b", "p-b"), healthy("c", "p-c"))),
	}
	rng := rand.New(rand.NewPCG(24, 1))
	for i := range 2000 {
		evidence := i%2 == 0
		r, _ := watchRun(true, Started{At: t0}, PlanLoaded{At: at(time.Second), Plan: watchPlan(rollout.ScopeWave), Commit: "abc1234"})
		w := testWave(rollout.FailureBudget{})
		w.Evidence = evidence
		w, _ = step(w, stands[rng.IntN(len(stands))]...)
		var seq []ControlAction
		for range 1 + rng.IntN(6) {
			a := actions[rng.IntN(len(actions))]
			var e Event = Controlled{Control: rollout.Control{Action: string(a), By: "U1", At: at(6 * time.Minute)}}
			if a == ControlAction(rollout.StopWatch) {
				e = WatchDegraded{At: at(6 * time.Minute), Wave: "canary", Site: "a", Message: "failing"}
			} else if r.CheckControl(a) != nil {
				continue // refused by the update's validator: it never reaches the workflow
			}
			seq = append(seq, a)
			var cmds []any
			r, cmds = next(r, e)
			for _, c := range cmds {
				if f, ok := c.(ForwardControl); ok {
					w, _, _ = w.Next(WaveControl{At: at(6 * time.Minute), Action: f.Action})
				}
			}
		}
		paused := r.Status.State == rollout.StatePaused
		stopped := r.Stop != rollout.StopNone
		if w.Paused != paused && w.Phase != WaveDone {
			t.Fatalf("controls %v (evidence %v): rollout paused %v, wave paused %v", seq, evidence, paused, w.Paused)
		}
		if w.Aborted != stopped {
			t.Fatalf("controls %v (evidence %v): rollout stopping %v (%s), wave aborted %v", seq, evidence, stopped, r.Stop, w.Aborted)
		}
	}
}
