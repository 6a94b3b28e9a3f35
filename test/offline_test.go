//go:build e2e

package test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetwave/fleetwave/rollout"
)

// offlinePlan is a one-wave plan of five sites in batches of two (a b, c d, e) that defers
// offline sites: after 2m unreachable, at most maxDeferred of them.
func offlinePlan(t *testing.T, maxDeferred, bake, convergence string) string {
	t.Helper()
	plan := filepath.Join(t.TempDir(), "fleetwave.yaml")
	writeFile(t, plan, `apiVersion: fleetwave.dev/v1alpha1
kind: RolloutPlan
metadata: {name: edge}
spec:
  sites: [{name: a}, {name: b}, {name: c}, {name: d}, {name: e}]
  waves:
    - {name: all, sites: [a, b, c, d, e], maxParallel: 2, bake: `+bake+`}
  health:
    interval: 30s
    convergenceTimeout: `+convergence+`
    unknownTimeout: 5m
    offline: {after: 2m, action: defer, maxDeferred: `+maxDeferred+`}
`)
	return plan
}

// sitesByName maps each site of the rollout to its status.
func sitesByName(st rollout.Status) map[string]rollout.SiteStatus {
	out := map[string]rollout.SiteStatus{}
	for _, w := range st.Waves {
		for _, s := range w.Sites {
			out[s.Name] = s
		}
	}
	return out
}

// TestRehearseOfflineDeferred: c is offline from the start, so it is Deferred when its batch
// is promoted and nothing is pushed to its branch. e takes 30 minutes to apply and goes offline
// 10 minutes in, after its promotion was pushed: it is Deferred too, and its promotion is
// withdrawn by a revert commit, which the git CLI finds on sites/e with its reason, the branch's
// tree back to what it was. Within maxDeferred 2 the wave goes on, and the rollout Succeeds
// saying "2 sites deferred".
func TestRehearseOfflineDeferred(t *testing.T) {
	bin := buildFleetwave(t)
	keep := filepath.Join(t.TempDir(), "repo")
	code, out, rep := rehearse(t, bin, `  - {unreachable: {sites: [c]}}
  - {slowReconcile: {sites: [e], delay: {p50: 30m, p99: 30m}}}
  - {unreachable: {sites: [e], from: 10m}}
`, "--plan", offlinePlan(t, "2", "5m", "30m"), "--time-scale", "60", "--keep-repo", keep, "--catch-up-timeout", "2m")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	st := rep.Status
	if st.State != rollout.StateSucceeded || !strings.HasPrefix(st.Reason, "2 sites deferred (offline): c, e") {
		t.Fatalf("rollout %s (%q), want Succeeded with 2 sites deferred\n%s", st.State, st.Reason, out)
	}
	v := sitesByName(st)
	for _, name := range []string{"a", "b", "d"} {
		if s := v[name]; s.Verdict != rollout.VerdictHealthy || !s.Promoted {
			t.Errorf("%s: %s, promoted %v; want Healthy", name, s.Verdict, s.Promoted)
		}
	}
	if c := v["c"]; c.Verdict != rollout.VerdictDeferred || c.Promoted || !strings.Contains(c.Message, "nothing pushed") {
		t.Errorf("c: %s, promoted %v, %q; want Deferred with nothing pushed", c.Verdict, c.Promoted, c.Message)
	}
	e := v["e"]
	if e.Verdict != rollout.VerdictDeferred || e.Revert == "" || !strings.Contains(e.Message, "withdrawn") {
		t.Errorf("e: %s, revert %q, %q; want Deferred, its promotion withdrawn", e.Verdict, e.Revert, e.Message)
	}
	// c and e stay offline: --catch-up-timeout 2m reports their catch-ups still probing.
	if !strings.HasSuffix(strings.TrimSpace(out), "2 sites deferred (offline): c, e; catch-ups: c Waiting, e Waiting") {
		t.Errorf("the last line does not say which sites were deferred and how their catch-ups stand:\n%s", out)
	}
	for _, c := range rep.Rehearsal.CatchUps {
		if c.State != rollout.StateWaiting || c.Verdict != "" || !strings.Contains(c.Reason, "probing every 1s") {
			t.Errorf("catch-up of %s: %s %s %q; want Waiting, probing every 1s (1m at time scale 60)", c.Site, c.State, c.Verdict, c.Reason)
		}
	}
	if rep.Rehearsal.Deferred != 2 || rep.Rehearsal.Git.Promotions != 4 || rep.Rehearsal.Git.Reverts != 1 || len(rep.Rehearsal.Git.Mismatches) > 0 {
		t.Errorf("report: %d deferred, git %+v; want 2 deferred, 4 promotions (a b d e), e's withdrawal, no mismatch", rep.Rehearsal.Deferred, rep.Rehearsal.Git)
	}

	// The git CLI: nothing on sites/c; on sites/e the promotion, then its revert with the reason.
	seed := git(t, keep, "rev-list", "--max-parents=0", "main")
	if head := git(t, keep, "rev-parse", "sites/c"); head != seed {
		t.Errorf("sites/c at %s, want the seed %s: nothing pushed", head, seed)
	}
	log := strings.Split(git(t, keep, "log", "--format=%H %s", seed+"..sites/e"), "\n")
	if len(log) != 2 || !strings.HasPrefix(log[0], e.Revert+" Revert") {
		t.Fatalf("sites/e since the seed:\n%s\nwant the promotion and then its revert %s", strings.Join(log, "\n"), e.Revert)
	}
	// The reason's durations are on the rehearsal's scaled clock.
	if reason := git(t, keep, "log", "-1", "--format=%(trailers:key=Fleetwave-Reason,valueonly)", "sites/e"); !strings.HasPrefix(reason, "withdrawn: e offline for ") ||
		!strings.Contains(reason, " (health.offline.after) before applying the promotion of wave all") {
		t.Errorf("the revert's Fleetwave-Reason: %q", reason)
	}
	if diff := git(t, keep, "diff", "--stat", seed, "sites/e"); diff != "" {
		t.Errorf("sites/e differs from the seed after the withdrawal:\n%s", diff)
	}
}

// TestRehearseOfflineRejoins: c cannot be reached for the first 8 minutes. It is Deferred
// when its batch comes (about 2 minutes after the wave started), comes back while the wave
// bakes (15m), rejoins it: it is promoted, converges and passes the rest of the bake, and ends
// Healthy, so the rollout Succeeds with no site deferred.
func TestRehearseOfflineRejoins(t *testing.T) {
	bin := buildFleetwave(t)
	code, out, rep := rehearse(t, bin, "  - {unreachable: {sites: [c], for: 8m}}\n",
		"--plan", offlinePlan(t, "1", "15m", "10m"), "--time-scale", "60")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	st := rep.Status
	if st.State != rollout.StateSucceeded || st.Reason != "" {
		t.Fatalf("rollout %s (%q), want Succeeded with no site deferred\n%s", st.State, st.Reason, out)
	}
	if !strings.Contains(out, "1 Deferred") {
		t.Errorf("c was never Deferred:\n%s", out)
	}
	for name, s := range sitesByName(st) {
		if s.Verdict != rollout.VerdictHealthy || !s.Promoted {
			t.Errorf("%s: %s, promoted %v; want Healthy", name, s.Verdict, s.Promoted)
		}
	}
	if g := rep.Rehearsal.Git; g.Promotions != 5 || g.Reverts != 0 || len(g.Mismatches) > 0 || len(g.Duplicates) > 0 {
		t.Errorf("git %+v: want 5 promotions (c's after it came back), no revert", g)
	}
}

// TestRehearseTooManyOffline: c and d are offline from the start and maxDeferred is 1: the
// second deferral fails the wave, closed, naming the setting. Nothing was pushed to c or d,
// and the promoted a and b are reverted with their wave.
func TestRehearseTooManyOffline(t *testing.T) {
	bin := buildFleetwave(t)
	code, out, rep := rehearse(t, bin, "  - {unreachable: {sites: [c, d]}}\n",
		"--plan", offlinePlan(t, "1", "5m", "10m"), "--time-scale", "60")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	st := rep.Status
	if st.State != rollout.StateFailed || !strings.Contains(st.Reason, "2 sites of wave all offline, more than health.offline.maxDeferred (1 = 1)") {
		t.Fatalf("rollout %s (%q), want Failed past maxDeferred\n%s", st.State, st.Reason, out)
	}
	v := sitesByName(st)
	for _, name := range []string{"c", "d"} {
		if v[name].Promoted {
			t.Errorf("%s was promoted while offline", name)
		}
	}
	for _, name := range []string{"a", "b"} {
		if v[name].Verdict != rollout.VerdictReverted {
			t.Errorf("%s: %s, want reverted with its failed wave", name, v[name].Verdict)
		}
	}
	if v["e"].Promoted {
		t.Error("e, in the batch after the failure, was promoted")
	}
}

// TestRehearseCatchUp: c and d cannot be reached for the first 20 minutes, so the rollout
// defers both and Succeeds without them (about 10 minutes). Their catch-ups, CatchUp
// workflows that outlive the rollout, probe them until they answer, then promote the rollout's
// commit through the wave's gates: c converges and passes the bake, Healthy; d fails its
// checks on the commit (a degrade fault), so its catch-up reverts it and fails. The report
// lists both in rehearsal.catchUps, and the git CLI finds each catch-up's commits on the site
// branch under its own Fleetwave-Rollout trailer: c on the rollout's tree, d back on the
// seed's.
func TestRehearseCatchUp(t *testing.T) {
	bin := buildFleetwave(t)
	keep := filepath.Join(t.TempDir(), "repo")
	code, out, rep := rehearse(t, bin, `  - {unreachable: {sites: [c, d], for: 20m}}
  - {degrade: {sites: [d]}}
`, "--plan", offlinePlan(t, "2", "5m", "30m"), "--time-scale", "60", "--keep-repo", keep)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	st := rep.Status
	if st.State != rollout.StateSucceeded || !strings.HasPrefix(st.Reason, "2 sites deferred (offline): c, d") {
		t.Fatalf("rollout %s (%q), want Succeeded with c and d deferred\n%s", st.State, st.Reason, out)
	}
	// The rollout's own status keeps them Deferred; the catch-ups say how they ended.
	v := sitesByName(st)
	if v["c"].Verdict != rollout.VerdictDeferred || v["d"].Verdict != rollout.VerdictDeferred {
		t.Errorf("c %s, d %s in the rollout's status; want both Deferred", v["c"].Verdict, v["d"].Verdict)
	}
	got := map[string]string{}
	for _, c := range rep.Rehearsal.CatchUps {
		got[c.Site] = string(c.State) + " " + string(c.Verdict)
		if c.Commit != st.Commit || c.At == "" {
			t.Errorf("catch-up of %s: commit %s, at %q; want the rollout's commit %s and an end time", c.Site, c.Commit, c.At, st.Commit)
		}
	}
	if got["c"] != "Succeeded Healthy" || got["d"] != "Failed Reverted" || len(got) != 2 {
		t.Fatalf("catch-ups %v, want c Succeeded Healthy and d Failed Reverted\n%s", got, out)
	}
	if !strings.Contains(out, "catch-up of c Succeeded: Healthy") || !strings.Contains(out, "catch-up of d Failed: Reverted") ||
		!strings.HasSuffix(strings.TrimSpace(out), "2 sites deferred (offline): c, d; catch-ups: c Healthy, d Reverted") {
		t.Errorf("the progress and the last line do not show the catch-ups' ends:\n%s", out)
	}

	seed := git(t, keep, "rev-list", "--max-parents=0", "main")
	tree := func(ref string) string { return git(t, keep, "rev-parse", ref+"^{tree}") }
	trailer := func(ref string) string {
		return git(t, keep, "log", "-1", "--format=%(trailers:key=Fleetwave-Rollout,valueonly)", ref)
	}
	// c: one promotion, the catch-up's, on the tree every healthy site runs.
	if log := git(t, keep, "log", "--format=%s", seed+"..sites/c"); strings.Count(log, "\n") != 0 || !strings.HasPrefix(log, "Promote ") {
		t.Errorf("sites/c since the seed:\n%s\nwant one promotion", log)
	}
	if trailer("sites/c") != "catchup/edge/c" || tree("sites/c") != tree("sites/a") {
		t.Errorf("sites/c: trailer %q, tree == sites/a's %v; want the catch-up's promotion of the rollout's tree", trailer("sites/c"), tree("sites/c") == tree("sites/a"))
	}
	// d: the catch-up's promotion, then its revert; the tree is the seed's again.
	log := strings.Split(git(t, keep, "log", "--format=%s", seed+"..sites/d"), "\n")
	if len(log) != 2 || !strings.HasPrefix(log[0], "Revert ") || !strings.HasPrefix(log[1], "Promote ") {
		t.Errorf("sites/d since the seed:\n%s\nwant the catch-up's promotion and its revert", strings.Join(log, "\n"))
	}
	if trailer("sites/d") != "catchup/edge/d" || tree("sites/d") != tree(seed) {
		t.Errorf("sites/d: trailer %q, back on the seed's tree %v", trailer("sites/d"), tree("sites/d") == tree(seed))
	}
	t.Logf("the rehearsal:\n%s", out)
}

// TestRehearseCatchUpWaitsForFreeze: c cannot be reached for the first 20 minutes and is
// caught up after the rollout ended, but a freeze of the plan's policies runs from 15 to 35
// minutes after the rehearsal starts. The catch-up is judged by the policies for c at that
// time, on the rollout's clock: it waits for the freeze to end, then promotes and bakes 5
// minutes, so it ends Healthy no earlier than 39 minutes in (without the freeze, about 27).
func TestRehearseCatchUpWaitsForFreeze(t *testing.T) {
	bin := buildFleetwave(t)
	freeze := time.Now().UTC().Add(15 * time.Minute).Truncate(time.Second)
	plan := filepath.Join(t.TempDir(), "fleetwave.yaml")
	writeFile(t, plan, `apiVersion: fleetwave.dev/v1alpha1
kind: RolloutPlan
metadata: {name: edge}
spec:
  sites: [{name: a}, {name: b}, {name: c}]
  waves:
    - {name: all, sites: [a, b, c], maxParallel: 2, bake: 5m}
  health:
    interval: 30s
    convergenceTimeout: 30m
    unknownTimeout: 5m
    offline: {after: 2m, action: defer, maxDeferred: 1}
  policies:
    freezes:
      - {name: change-freeze, start: "`+freeze.Format("2006-01-02T15:04:05")+`", duration: 20m}
`)
	code, out, rep := rehearse(t, bin, "  - {unreachable: {sites: [c], for: 20m}}\n", "--plan", plan, "--time-scale", "60")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if st := rep.Status; st.State != rollout.StateSucceeded || st.Reason != "1 site deferred (offline): c" {
		t.Fatalf("rollout %s (%q), want Succeeded with c deferred\n%s", st.State, st.Reason, out)
	}
	if len(rep.Rehearsal.CatchUps) != 1 {
		t.Fatalf("catch-ups %+v, want c's", rep.Rehearsal.CatchUps)
	}
	c := rep.Rehearsal.CatchUps[0]
	ended, err := time.ParseDuration(c.At)
	if c.State != rollout.StateSucceeded || c.Verdict != rollout.VerdictHealthy || err != nil || ended < 39*time.Minute {
		t.Errorf("catch-up of c: %s %s at %q; want Succeeded Healthy after the freeze and the bake, 39m or later\n%s", c.State, c.Verdict, c.At, out)
	}
	// The wait is on the real clock, as the workflow's timer runs.
	if !strings.Contains(out, "catch-up of c Waiting (waiting until ") || !strings.Contains(out, "change-freeze") {
		t.Errorf("the progress does not show the catch-up held by the freeze until its end:\n%s", out)
	}
}
