package workflows

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetwave/fleetwave/rollout"
)

// TestWatchFailsTheRolloutForAnEarlierWave: the canary (bake 10m) degrades 25 minutes in,
// while eu bakes. The watch sees it, eu is aborted, the rollout reverts the canary and eu's
// promoted sites (scope wave: the degraded site's wave, and the wave that never passed its
// gate), fails naming the site and its wave, and the fleet wave is untouched.
func TestWatchFailsTheRolloutForAnEarlierWave(t *testing.T) {
	env := newEnv(t)
	f := newFakeFleet(t, env, testPlan(t, "wave", ""))
	start := env.Now()
	f.degradedFrom = map[string]time.Time{"ams-1": start.Add(25 * time.Minute)}
	st, err := run(t, env)
	if err == nil || st.State != rollout.StateFailed {
		t.Fatalf("rollout %s (%v), want Failed", st.State, err)
	}
	if want := "site ams-1 of wave canary degraded after its wave succeeded: check error-rate failed"; !strings.HasPrefix(st.Reason, want) {
		t.Errorf("reason %q, want it to start %q", st.Reason, want)
	}
	canary, eu, fleet := st.Waves[0], st.Waves[1], st.Waves[2]
	if canary.State != rollout.StateSucceeded || canary.Sites[0].Verdict != rollout.VerdictReverted {
		t.Errorf("canary %s, ams-1 %s: want the wave's record Succeeded and ams-1 reverted", canary.State, canary.Sites[0].Verdict)
	}
	if eu.State != rollout.StateAborted {
		t.Errorf("eu %s, want Aborted by the watch", eu.State)
	}
	for _, s := range eu.Sites {
		if s.Verdict != rollout.VerdictReverted {
			t.Errorf("eu site %s %s, want reverted: it never passed its gate", s.Name, s.Verdict)
		}
	}
	if fleet.State != rollout.StatePending || slices.ContainsFunc(f.callsOf("promote"), func(c call) bool { return slices.Contains(c.Sites, "nyc-1") }) {
		t.Errorf("fleet %s: want it untouched", fleet.State)
	}
	var reverted []string
	for _, c := range f.callsOf("revert") {
		reverted = append(reverted, c.Sites...)
	}
	if got := strings.Join(reverted, ","); got != "ams-2,fra-1,fra-2,ams-1" {
		t.Errorf("reverts %s, want eu's sites then the canary", got)
	}
	// Seen within failureThreshold rounds of the degradation (interval 1m, threshold 3).
	if r := f.callsOf("revert"); len(r) == 0 || r[0].At.Sub(start) > 28*time.Minute {
		t.Errorf("the first revert came at %v", r)
	}
}

// TestWatchWaveKeepsTheOldBehaviour: with health.watch: wave, nothing observes the canary
// after its wave, and the rollout succeeds despite it (what plans that ask for it get).
func TestWatchWaveKeepsTheOldBehaviour(t *testing.T) {
	env := newEnv(t)
	plan := strings.Replace(testPlan(t, "wave", ""), "unknownTimeout: 5m}", "unknownTimeout: 5m, watch: wave}", 1)
	f := newFakeFleet(t, env, plan)
	f.degradedFrom = map[string]time.Time{"ams-1": env.Now().Add(25 * time.Minute)}
	st, err := run(t, env)
	if err != nil || st.State != rollout.StateSucceeded {
		t.Fatalf("rollout %s (%v), want Succeeded", st.State, err)
	}
	n := 0
	for _, c := range f.callsOf("observe") {
		if slices.Equal(c.Sites, []string{"ams-1"}) {
			n++
		}
	}
	if n != 11 {
		t.Errorf("canary observed %d times, want its 11 bake rounds only", n)
	}
}

// TestZeroBakeCanaryFailing: a canary without a bake whose check fails is reverted, and the
// rollout fails (the old gate let it pass on its first round).
func TestZeroBakeCanaryFailing(t *testing.T) {
	env := newEnv(t)
	plan := strings.Replace(testPlan(t, "wave", ""), "selector: {tier: canary}, bake: 10m}", "selector: {tier: canary}, bake: 0s}", 1)
	f := newFakeFleet(t, env, plan)
	f.degraded["ams-1"] = true
	st, err := run(t, env)
	if err == nil || st.State != rollout.StateFailed || !strings.Contains(st.Reason, "site ams-1 degraded in wave canary") {
		t.Fatalf("rollout %s (%v): %s", st.State, err, st.Reason)
	}
	if s := st.Waves[0].Sites[0]; s.Verdict != rollout.VerdictReverted {
		t.Errorf("ams-1 %s, want reverted", s.Verdict)
	}
	if len(f.callsOf("observe")) != 3 {
		t.Errorf("%d rounds, want failureThreshold (3)", len(f.callsOf("observe")))
	}
}
