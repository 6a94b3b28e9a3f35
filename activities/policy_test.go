package activities

import (
	"context"
	"testing"
	"time"

	"github.com/fleetwave/fleetwave/rollout"
)

// TestEvaluatePolicyOnThePlansClock: a rehearsal's worker (WithTimeScale) judges freezes and
// soaks on the plan's clock, which starts with the rollout, and its waits come back on the real
// clock. Two minutes into a rehearsal at time scale 60 are two hours into the plan: inside a
// freeze that starts one hour after the rollout, which a worker without the scale does not see.
func TestEvaluatePolicyOnThePlansClock(t *testing.T) {
	start := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	freeze := rollout.Freeze{Name: "deploy freeze", Start: start.Add(time.Hour), Timezone: "UTC", Duration: 2 * time.Hour}
	req := PolicyRequest{
		Builtins: rollout.Policies{Freezes: []rollout.Freeze{freeze}},
		Input: rollout.PolicyInput{Now: start.Add(2 * time.Minute), Rollout: rollout.PolicyRollout{StartedAt: start},
			Wave: rollout.PolicyWave{Name: "eu"}},
	}
	real, err := EvaluatePolicy(context.Background(), req)
	if err != nil || real.Outcome != rollout.PolicyAllow {
		t.Fatalf("without a time scale: %+v, %v; want allow (the freeze is an hour away)", real, err)
	}
	scaled, err := EvaluatePolicy(WithTimeScale(context.Background(), 60), req)
	if err != nil {
		t.Fatal(err)
	}
	if scaled.Outcome != rollout.PolicyWait || !scaled.WaitUntil.Equal(start.Add(3*time.Minute)) || !scaled.At.Equal(req.Input.Now) {
		t.Errorf("at time scale 60: %+v; want a wait until %s (the freeze's end, 3h into the plan)", scaled, start.Add(3*time.Minute))
	}

	// A soak of 30 minutes after the previous wave, which finished 1 real minute (1 plan hour)
	// after the start: 12 plan minutes later the wave waits until the soak's end, 18 real seconds on.
	soak := PolicyRequest{MinSoak: 30 * time.Minute, Input: rollout.PolicyInput{Now: start.Add(72 * time.Second),
		Rollout:       rollout.PolicyRollout{StartedAt: start},
		PreviousWaves: []rollout.PolicyWaveResult{{Name: "canary", State: rollout.StateSucceeded, StartedAt: start, FinishedAt: start.Add(time.Minute)}},
		Wave:          rollout.PolicyWave{Name: "eu", Index: 1}}}
	d, err := EvaluatePolicy(WithTimeScale(context.Background(), 60), soak)
	if err != nil {
		t.Fatal(err)
	}
	if d.Outcome != rollout.PolicyWait || !d.WaitUntil.Equal(start.Add(90*time.Second)) {
		t.Errorf("soak at time scale 60: %+v; want a wait until %s", d, start.Add(90*time.Second))
	}
}
