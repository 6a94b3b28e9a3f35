//go:build e2e

package test

import (
	"path/filepath"
	"strings"
	"testing"

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
`, "--plan", offlinePlan(t, "2", "5m", "30m"), "--time-scale", "60", "--keep-repo", keep)
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
	if !strings.HasSuffix(strings.TrimSpace(out), "2 sites deferred (offline): c, e") {
		t.Errorf("the last line does not say which sites were deferred:\n%s", out)
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
