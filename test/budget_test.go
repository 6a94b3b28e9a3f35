//go:build e2e

package test

import (
	"strings"
	"testing"
	"time"

	"github.com/fleetwave/fleetwave/gitops/gittest"
	"github.com/fleetwave/fleetwave/rollout"
	"github.com/fleetwave/fleetwave/test/testenv"
	"github.com/fleetwave/fleetwave/workflows"
)

// TestFailureBudgetOnServe: the fleet wave may lose one site (maxFailures: 1). nyc-2 degrades
// once it applies the commit: it alone is reverted through git, the wave goes on, and the
// rollout succeeds with every other site on the commit. The git CLI checks the branches.
func TestFailureBudgetOnServe(t *testing.T) {
	bin := buildFleetwave(t)
	tp := testenv.StartTemporal(t)
	gs := gittest.NewServer(t, "fleet", faultPlan(""), siteBranches()...)
	budget := strings.Replace(plan, "{name: fleet, bake: 1s}", "{name: fleet, bake: 3s, maxFailures: 1}", 1)
	if budget == plan {
		t.Fatal("the test plan has no fleet wave to give a budget")
	}
	commit := gs.CommitOn(t, "main", "app v2, degrading nyc-2", map[string]string{"apps/app.yaml": "version: 2\n",
		"fleetwave.yaml": budget, ".fleetwave/sim.yaml": "reconcileDelay: 200ms\ndegraded: [nyc-2]\n"})
	before := gs.Head(t, "sites/nyc-2")
	startServe(t, bin, tp.Address, gs.URL, nil)
	tc := dialTemporal(t, tp.Address)

	id := workflows.RolloutID("demo", commit)
	if out, err := fleetwaveCLI(t, bin, tp.Address, "start", "--fleet", "demo", commit); err != nil {
		t.Fatalf("fleetwave start: %v: %s", err, out)
	}
	if err := waitRollout(t, tc, id, 2*time.Minute); err != nil {
		t.Fatalf("rollout failed although nyc-2 was within the failure budget: %v", err)
	}
	tree := git(t, gs.Dir, "rev-parse", commit+"^{tree}")
	for _, s := range sites {
		got := git(t, gs.Dir, "rev-parse", "sites/"+s+"^{tree}")
		if s == "nyc-2" {
			if want := git(t, gs.Dir, "rev-parse", before+"^{tree}"); got != want {
				t.Errorf("nyc-2 runs tree %s, want the tree before the promotion %s", got, want)
			}
			continue
		}
		if got != tree {
			t.Errorf("site %s is not on the commit", s)
		}
	}
	subjects := git(t, gs.Dir, "log", "--format=%s", before+"..sites/nyc-2")
	want := `Revert "Promote ` + rollout.Short(commit) + ` to nyc-2: app v2, degrading nyc-2"` + "\n" + "Promote " + rollout.Short(commit) + " to nyc-2: app v2, degrading nyc-2"
	if subjects != want {
		t.Errorf("git log sites/nyc-2:\n%s\nwant one promotion and its revert:\n%s", subjects, want)
	}
	st := statusJSON(t, bin, tp.Address, id)
	fleet := st.Waves[2]
	if st.State != rollout.StateSucceeded || fleet.State != rollout.StateSucceeded || fleet.Message != "1 site reverted within the failure budget (maxFailures 1)" {
		t.Errorf("rollout %s, fleet wave %s %q", st.State, fleet.State, fleet.Message)
	}
	if s := fleet.Site("nyc-2"); s.Verdict != rollout.VerdictReverted || s.Revert != gs.Head(t, "sites/nyc-2") {
		t.Errorf("nyc-2: %+v", s)
	}
	out, err := fleetwaveCLI(t, bin, tp.Address, "status", id)
	if err != nil || !strings.Contains(out, "within the failure budget") {
		t.Errorf("fleetwave status: %v\n%s", err, out)
	}
}
