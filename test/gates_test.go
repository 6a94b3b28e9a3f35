//go:build e2e

package test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetwave/fleetwave/rollout"
	"github.com/fleetwave/fleetwave/workflows"
)

// samplePlan is the plan of the sample repo `fleetwave dev` serves, with each replacement made
// (old, new, old, new...), each of which must apply once.
func samplePlan(t *testing.T, replace ...string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "cmd", "fleetwave", "sample", "fleetwave.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	plan := string(data)
	for i := 0; i+1 < len(replace); i += 2 {
		if strings.Count(plan, replace[i]) != 1 {
			t.Fatalf("the sample plan has %q %d times, want once", replace[i], strings.Count(plan, replace[i]))
		}
		plan = strings.Replace(plan, replace[i], replace[i+1], 1)
	}
	return plan
}

// TestGatesDecideOnEvidenceOnDev: on `fleetwave dev` (real dev server, the binary, the git
// server, simulated sites), two gates that used to pass without evidence now fail closed.
//
//   - A canary without a bake (bake: 0s) whose site degrades: ams-1 used to end "Healthy (1 of
//     3 failures in a row)" in a Succeeded rollout. It is reverted (the git CLI sees a real
//     revert back to the tree before), the rollout fails, and the later waves are untouched.
//   - A check that can never be measured (a Prometheus query against 127.0.0.1:9, where nothing
//     listens) with a bake shorter than unknownTimeout: every site used to be Unknown in a
//     Succeeded rollout. The canary wave now fails closed after unknownTimeout.
func TestGatesDecideOnEvidenceOnDev(t *testing.T) {
	s := newDevSession(t)
	sampleID := workflows.RolloutID("demo", lsRemote(t, s.gitURL, "refs/heads/main"))
	if err := waitRollout(t, s.tc, sampleID, 3*time.Minute); err != nil {
		t.Fatalf("sample rollout: %v\n%s", err, s.dev.log())
	}
	heads := func() map[string]string {
		m := map[string]string{}
		for _, site := range devSites {
			m[site] = lsRemote(t, s.gitURL, "refs/heads/sites/"+site)
		}
		return m
	}
	tree := func(ref string) string { return git(t, s.bare, "rev-parse", ref+"^{tree}") }
	before := heads()

	// A canary without a bake, degrading.
	bad, _ := clonePush(t, s.gitURL, "bake 0 and a degrading canary", map[string]string{
		"fleetwave.yaml":      samplePlan(t, "      selector: {tier: canary}\n      bake: 10s", "      selector: {tier: canary}\n      bake: 0s"),
		".fleetwave/sim.yaml": "reconcileDelay: 1s\ndegraded: [ams-1]\n",
	})
	badID := workflows.RolloutID("demo", bad)
	err := waitRollout(t, s.tc, badID, 3*time.Minute)
	if err == nil || !strings.Contains(err.Error(), "site ams-1 degraded in wave canary") {
		t.Fatalf("rollout of a degrading canary without a bake: %v, want it failed for ams-1\n%s", err, s.dev.log())
	}
	after := heads()
	for _, site := range devSites[1:] {
		if after[site] != before[site] {
			t.Errorf("site %s of a later wave was touched", site)
		}
	}
	revert := after["ams-1"]
	if subject := git(t, s.bare, "log", "-1", "--format=%s", revert); !strings.HasPrefix(subject, `Revert "Promote `) {
		t.Errorf("sites/ams-1 head %s is %q, want a revert of the promotion", rollout.Short(revert), subject)
	}
	if tree(revert) != tree(before["ams-1"]) || tree(revert+"^") != tree(bad) {
		t.Errorf("sites/ams-1: the revert's tree is not the tree before the promotion")
	}
	st := statusJSON(t, s.bin, s.temporal, badID)
	if c := st.Waves[0].Sites[0]; st.State != rollout.StateFailed || c.Verdict != rollout.VerdictReverted {
		t.Errorf("status: rollout %s, ams-1 %s; want Failed and Reverted", st.State, c.Verdict)
	}

	// A check nothing can measure. The canary bakes 10s; unknownTimeout is 30s.
	unmeasured, _ := clonePush(t, s.gitURL, "a check against a port where nothing listens", map[string]string{
		"fleetwave.yaml": samplePlan(t, "    unknownTimeout: 30s\n",
			"    unknownTimeout: 30s\n    checks:\n      - name: error-rate\n        prometheus: {url: \"http://127.0.0.1:9\", query: \"up\", max: 1}\n"),
		".fleetwave/sim.yaml": "reconcileDelay: 1s\ndegraded: []\n",
	})
	unmeasuredID := workflows.RolloutID("demo", unmeasured)
	started := time.Now()
	err = waitRollout(t, s.tc, unmeasuredID, 3*time.Minute)
	if err == nil || !strings.Contains(err.Error(), "site ams-1 degraded in wave canary") || !strings.Contains(err.Error(), "unknown for") {
		t.Fatalf("rollout with an unmeasurable check: %v, want the canary failed closed after unknownTimeout\n%s", err, s.dev.log())
	}
	if took := time.Since(started); took < 30*time.Second {
		t.Errorf("failed after %s, before unknownTimeout (30s)", took)
	}
	st = statusJSON(t, s.bin, s.temporal, unmeasuredID)
	if st.Waves[0].State != rollout.StateFailed || st.Waves[1].State != rollout.StatePending {
		t.Errorf("waves: canary %s, eu-west %s; want Failed, Pending", st.Waves[0].State, st.Waves[1].State)
	}
	if c := st.Waves[0].Sites[0]; c.Verdict != rollout.VerdictReverted || c.Revert != heads()["ams-1"] {
		t.Errorf("ams-1 %s, revert %s: want it reverted through git", c.Verdict, rollout.Short(c.Revert))
	}
}

// TestRehearseBudgetedRevertDoesNotBlind: one wave of four sites (a, u, d, b), bake 15m,
// maxFailures 1. u is unreachable from 2m and is reverted within the budget at about 7m; its
// revert cannot apply while it is unreachable. d degrades from 8m. The old wave waited for u's
// revert with no health round and never saw d: the rollout Succeeded with d Healthy. Now the
// rounds go on while u's revert waits, d fails the wave, and the rollout reverts by its scope.
func TestRehearseBudgetedRevertDoesNotBlind(t *testing.T) {
	bin := buildFleetwave(t)
	plan := filepath.Join(t.TempDir(), "fleetwave.yaml")
	writeFile(t, plan, `apiVersion: fleetwave.dev/v1alpha1
kind: RolloutPlan
metadata: {name: blind}
spec:
  sites: [{name: a}, {name: u}, {name: d}, {name: b}]
  waves:
    - {name: all, sites: [a, u, d, b], maxParallel: 4, bake: 15m, maxFailures: 1}
  health: {interval: 30s, failureThreshold: 3, convergenceTimeout: 10m, unknownTimeout: 5m}
`)
	code, out, rep := rehearse(t, bin, `  - {unreachable: {sites: [u], from: 2m}}
  - {degrade: {sites: [d], after: 8m}}
`, "--plan", plan, "--time-scale", "60")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	st := rep.Status
	if st.State != rollout.StateFailed || !strings.Contains(st.Reason, "site d degraded in wave all") {
		t.Fatalf("rollout %s (%s), want Failed because of d\n%s", st.State, st.Reason, out)
	}
	verdicts := map[string]rollout.Verdict{}
	for _, s := range st.Waves[0].Sites {
		verdicts[s.Name] = s.Verdict
	}
	if verdicts["u"] != rollout.VerdictReverted || verdicts["d"] != rollout.VerdictReverted {
		t.Errorf("verdicts %v: want u reverted within the budget, d degraded then reverted with its wave", verdicts)
	}
	for _, f := range rep.Rehearsal.Faults {
		if f.Kind == "degrade" && (len(f.Sites) != 1 || f.Sites[0].Site != "d") {
			t.Errorf("the degrade fault acted on %+v, want d", f.Sites)
		}
	}
	if g := rep.Rehearsal.Git; g.Reverts != 4 || len(g.Mismatches) > 0 || len(g.Duplicates) > 0 {
		t.Errorf("git: %+v; want 4 reverts (u within the budget, then a, d, b by scope), as the status says", g)
	}
}

// TestRehearseWatchCoversTheRollout: canary c1 (bake 10m), a north wave (bake 30m), then the
// rest. c1 degrades 25 minutes in, while north bakes. The old rollout never looked at c1 again
// and Succeeded. Now the watch sees it: the rollout fails naming c1 and its wave, c1 and north
// (aborted, never past its gate) are reverted, and the rest wave is untouched.
func TestRehearseWatchCoversTheRollout(t *testing.T) {
	bin := buildFleetwave(t)
	plan := filepath.Join(t.TempDir(), "fleetwave.yaml")
	writeFile(t, plan, `apiVersion: fleetwave.dev/v1alpha1
kind: RolloutPlan
metadata: {name: watch}
spec:
  sites:
    - {name: c1, labels: {tier: canary}}
    - {name: n1, labels: {region: north}}
    - {name: n2, labels: {region: north}}
    - {name: r1}
  waves:
    - {name: canary, selector: {tier: canary}, bake: 10m}
    - {name: north, selector: {region: north}, bake: 30m}
    - {name: rest, bake: 10m}
  health: {interval: 30s, failureThreshold: 3, convergenceTimeout: 10m, unknownTimeout: 5m}
`)
	code, out, rep := rehearse(t, bin, "  - {degrade: {sites: [c1], after: 25m}}\n", "--plan", plan, "--time-scale", "120")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	st := rep.Status
	if st.State != rollout.StateFailed || !strings.HasPrefix(st.Reason, "site c1 of wave canary degraded after its wave succeeded") {
		t.Fatalf("rollout %s (%s), want Failed for c1 of wave canary\n%s", st.State, st.Reason, out)
	}
	canary, north, rest := st.Waves[0], st.Waves[1], st.Waves[2]
	if canary.State != rollout.StateSucceeded || canary.Sites[0].Verdict != rollout.VerdictReverted {
		t.Errorf("canary %s, c1 %s: want the wave's record Succeeded, c1 reverted", canary.State, canary.Sites[0].Verdict)
	}
	if north.State != rollout.StateAborted {
		t.Errorf("north %s, want Aborted by the watch", north.State)
	}
	for _, s := range north.Sites {
		if s.Verdict != rollout.VerdictReverted {
			t.Errorf("north site %s %s, want reverted", s.Name, s.Verdict)
		}
	}
	for _, s := range rest.Sites {
		if s.Promoted || s.Verdict != rollout.VerdictPending {
			t.Errorf("rest site %s: promoted %v, %s; want untouched", s.Name, s.Promoted, s.Verdict)
		}
	}
	if g := rep.Rehearsal.Git; g.Promotions != 3 || g.Reverts != 3 || len(g.Mismatches) > 0 || len(g.Duplicates) > 0 {
		t.Errorf("git: %+v; want 3 promotions and 3 reverts, as the status says", g)
	}
	watched := false
	for _, h := range rep.Rehearsal.Histories {
		watched = watched || (strings.HasSuffix(h.Workflow, "/watch/canary") && h.Events > 0)
	}
	if !watched {
		t.Errorf("histories %+v: want the canary's watch among them", rep.Rehearsal.Histories)
	}
}
