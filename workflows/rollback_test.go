package workflows

import (
	"context"
	"maps"
	"slices"
	"testing"

	"github.com/stretchr/testify/mock"

	"github.com/fleetwave/fleetwave/activities"
	"github.com/fleetwave/fleetwave/rollout"
)

// TestRollbackAfterTheEnd: the rollback of an ended rollout reverts the sites its promotion
// still holds, latest wave first, and names those it leaves: moved on by a later rollout,
// already reverted.
func TestRollbackAfterTheEnd(t *testing.T) {
	env := newEnv(t)
	env.RegisterWorkflow(Rollback)
	f := newFakeFleet(t, env, testPlan(t, "wave", ""))
	id := RolloutID("demo", commitA)
	promoted := func(name string, sites ...string) rollout.WaveStatus {
		w := rollout.WaveStatus{Name: name, State: rollout.StateSucceeded}
		for _, s := range sites {
			w.Sites = append(w.Sites, rollout.SiteStatus{Name: s, Branch: "sites/" + s, Promoted: true, Promotion: "promo-" + s, Verdict: rollout.VerdictHealthy})
		}
		return w
	}
	st := rollout.Status{Rollout: id, Fleet: "demo", Commit: commitA, State: rollout.StateFailed, Reason: "wave fleet rejected by U1",
		Waves: []rollout.WaveStatus{promoted("canary", "ams-1"), promoted("eu", "ams-2", "fra-1", "fra-2"), {Name: "fleet", State: rollout.StatePending}}}
	var ex *activities.Executions
	env.OnActivity(ex.Ended, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.EndedInput) (rollout.Status, error) {
		if in.WorkflowID != id || in.Query != QueryStatus {
			t.Errorf("ended %+v", in)
		}
		return st, nil
	})
	f.owners = map[string]activities.Owner{
		"ams-1": {Site: "ams-1", Rollout: RolloutID("demo", commitB)},
		"ams-2": {Site: "ams-2", Rollout: id},
		"fra-1": {Site: "fra-1", Rollout: id, Revert: true},
		"fra-2": {Site: "fra-2", Rollout: id},
	}
	for _, s := range []string{"ams-2", "fra-2"} {
		f.promoted[s], f.ours[s] = "promo-"+s, true
	}
	env.ExecuteWorkflow(Rollback, RollbackInput{Rollout: id, By: "U1", Reason: "the canary misbehaves"})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var res RollbackResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Reverted, []string{"ams-2", "fra-2"}) || len(res.Problems) > 0 {
		t.Errorf("reverted %v, problems %v; want ams-2 and fra-2", res.Reverted, res.Problems)
	}
	want := []string{"fra-1: already reverted", "ams-1: rollout " + RolloutID("demo", commitB) + " moved it on since"}
	if !slices.Equal(res.Skipped, want) {
		t.Errorf("skipped %q, want %q", res.Skipped, want)
	}
	reverts := f.callsOf("revert")
	if len(reverts) != 1 || !slices.Equal(reverts[0].Sites, []string{"ams-2", "fra-2"}) {
		t.Errorf("revert calls %+v, want one of ams-2 and fra-2", reverts)
	}
	// Its evidence: who, why, the revert commits and the sites left.
	if len(f.rollbackEvidence) != 1 {
		t.Fatalf("rollback evidence written %d times, want once", len(f.rollbackEvidence))
	}
	ev := f.rollbackEvidence[0]
	if ev.Rollout != id || ev.Workflow == "" || ev.By != "U1" || ev.Reason != "the canary misbehaves" || ev.Ended != rollout.StateFailed ||
		ev.Fleet != "demo" || ev.Commit != commitA || len(ev.Reverts) != 2 || ev.Reverts["ams-2"] == "" || !slices.Equal(ev.Skipped, want) {
		t.Errorf("rollback evidence %+v", ev)
	}
	if !slices.Equal(slices.Sorted(maps.Keys(res.Reverts)), []string{"ams-2", "fra-2"}) {
		t.Errorf("result's reverts %v", res.Reverts)
	}
}
