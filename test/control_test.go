//go:build e2e

package test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/fleetwave/fleetwave/rollout"
	"github.com/fleetwave/fleetwave/rollout/runbook"
	"github.com/fleetwave/fleetwave/workflows"
)

// fleetwaveCLI runs the binary against the dev server's Temporal.
func fleetwaveCLI(t *testing.T, bin, temporal string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "TEMPORAL_ADDRESS="+temporal)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func TestControlOnDev(t *testing.T) {
	s := newDevSession(t)
	bin, gitURL, temporal, tc, fw, bare := s.bin, s.gitURL, s.temporal, s.tc, s.fw, s.bare
	tree := func(ref string) string { return git(t, bare, "rev-parse", ref+"^{tree}") }

	// Pause the sample rollout while its canary bakes: the next wave waits for resume.
	id := workflows.RolloutID("demo", lsRemote(t, gitURL, "refs/heads/main"))
	// Pause once the canary bakes: a pause that came earlier would hold the rollout before the
	// canary, and the bake would never end.
	waitFor(t, "the sample rollout's canary to bake", func() bool {
		st, err := fw.Status(context.Background(), id)
		return err == nil && len(st.Waves) > 0 && !st.Waves[0].BakeUntil.IsZero()
	})
	out, err := fleetwaveCLI(t, bin, temporal, "pause", id, "--as", "U012ABC", "--reason", "checking dashboards")
	if err != nil || !strings.Contains(out, "paused") {
		t.Fatalf("fleetwave pause: %v: %s", err, out)
	}
	if out, err := fleetwaveCLI(t, bin, temporal, "pause", id); err == nil || !strings.Contains(out, "already paused") {
		t.Errorf("second pause: %v: %s", err, out)
	}
	euBefore := lsRemote(t, gitURL, "refs/heads/sites/ams-2")
	// The canary's bake ends while the rollout is paused: the wave holds, and nothing of the
	// next wave moves.
	var st rollout.Status
	waitFor(t, "the canary's bake to end while paused", func() bool {
		var err error
		if st, err = fw.Status(context.Background(), id); err != nil || len(st.Waves) == 0 {
			return false
		}
		bake := st.Waves[0].BakeUntil
		return !bake.IsZero() && time.Since(bake) > runbook.TimerSlack
	})
	if st.State != rollout.StatePaused || st.Waves[1].State != rollout.StatePending || lsRemote(t, gitURL, "refs/heads/sites/ams-2") != euBefore {
		t.Fatalf("while paused: rollout %s, eu-west %s, ams-2 moved: %v", st.State, st.Waves[1].State, lsRemote(t, gitURL, "refs/heads/sites/ams-2") != euBefore)
	}
	// A paused rollout does not end: --timeout stops following it, with the state it is in.
	start := time.Now()
	if out, err := fleetwaveCLI(t, bin, temporal, "status", id, "--watch", "--timeout", "2s"); err == nil ||
		!strings.Contains(out, "--timeout 2s passed; rollout "+id+" is still Paused") {
		t.Errorf("status --watch --timeout 2s on a paused rollout: %v: %s", err, out)
	}
	if out, err := fleetwaveCLI(t, bin, temporal, "start", lsRemote(t, gitURL, "refs/heads/main"), "--fleet", "demo", "--wait", "--timeout", "2s"); err == nil ||
		!strings.Contains(out, "--timeout 2s passed before rollout "+id+" ended") || !strings.Contains(out, id+"  Paused") {
		t.Errorf("start --wait --timeout 2s of the paused rollout's commit: %v: %s", err, out)
	}
	if took := time.Since(start); took > time.Minute {
		t.Errorf("two 2s timeouts took %s", took)
	}
	listed, err := fleetwaveCLI(t, bin, temporal, "list", "--state", "Paused", "-o", "json")
	summaries, jerr := listItems[workflows.Summary](listed)
	if err != nil || jerr != nil || len(summaries) != 1 || summaries[0].Rollout != id {
		t.Errorf("list --state Paused: %v: %s", err, listed)
	}
	if out, err := fleetwaveCLI(t, bin, temporal, "resume", id); err != nil {
		t.Fatalf("fleetwave resume: %v: %s", err, out)
	}
	if err := waitRollout(t, tc, id, 2*time.Minute); err != nil {
		t.Fatalf("resumed rollout: %v", err)
	}
	saveHistory(t, tc, id, "rollout-paused")
	sample := lsRemote(t, gitURL, "refs/heads/main")
	for _, s := range devSites {
		if tree("refs/heads/sites/"+s) != tree(sample) {
			t.Errorf("site %s not on the sample commit after resume", s)
		}
	}
	before := map[string]string{}
	for _, s := range devSites {
		before[s] = lsRemote(t, gitURL, "refs/heads/sites/"+s)
	}

	// Roll back a rollout in its second wave: both promoted waves are reverted through git,
	// the last wave is never touched.
	next, _ := clonePush(t, gitURL, "podinfo 6.6.0", map[string]string{"apps/podinfo/deployment.yaml": "kind: Deployment # 6.6.0\n"})
	nextID := workflows.RolloutID("demo", next)
	waitFor(t, "the eu-west wave to bake", func() bool {
		st, err := fw.Status(context.Background(), nextID)
		return err == nil && st.Wave == "eu-west" && st.State == rollout.StateBaking
	})
	if out, err := fleetwaveCLI(t, bin, temporal, "rollback", nextID, "--reason", "break glass"); err != nil || !strings.Contains(out, "rolling back") {
		t.Fatalf("fleetwave rollback: %v: %s", err, out)
	}
	err = waitRollout(t, tc, nextID, 2*time.Minute)
	if err == nil || !strings.Contains(err.Error(), "rolled back by") {
		t.Fatalf("rolled back rollout ended with %v", err)
	}
	for _, s := range devSites {
		head := lsRemote(t, gitURL, "refs/heads/sites/"+s)
		switch s {
		case "ams-1", "ams-2", "fra-1":
			if tree(head) != tree(before[s]) || !strings.HasPrefix(git(t, bare, "log", "-1", "--format=%s", head), `Revert "Promote `) {
				t.Errorf("site %s: head %s is not a revert back to the previous tree", s, rollout.Short(head))
			}
		default:
			if head != before[s] {
				t.Errorf("site %s of the last wave was touched", s)
			}
		}
	}
	saveHistory(t, tc, nextID, "rollout-rolledback")
	st, err = fw.Status(context.Background(), nextID)
	if err != nil || st.State != rollout.StateRolledBack || len(st.Controls) != 1 || st.Controls[0].Reason != "break glass" {
		t.Errorf("status after rollback: %v %+v", err, st)
	}
	if out, err := fleetwaveCLI(t, bin, temporal, "abort", nextID); err == nil || !strings.Contains(out, "does not exist, or it has ended") {
		t.Errorf("abort of an ended rollout: %v: %s", err, out)
	}
}

// TestSupersedeOnDev pushes two commits in quick succession under onNewCommit: supersede (the
// sample plan's default): the first rollout stops at a safe point, the second reaches every
// site, and git shows no half-done wave.
func TestSupersedeOnDev(t *testing.T) {
	s := newDevSession(t, "--no-sample-rollout")
	bin, gitURL, temporal, tc, fw, bare := s.bin, s.gitURL, s.temporal, s.tc, s.fw, s.bare
	tree := func(ref string) string { return git(t, bare, "rev-parse", ref+"^{tree}") }
	seeded := map[string]string{}
	for _, s := range devSites {
		seeded[s] = lsRemote(t, gitURL, "refs/heads/sites/"+s)
	}

	first, _ := clonePush(t, gitURL, "podinfo 6.6.0", map[string]string{"apps/podinfo/deployment.yaml": "kind: Deployment # 6.6.0\n"})
	waitFor(t, "the first commit on the canary", func() bool {
		return lsRemote(t, gitURL, "refs/heads/sites/ams-1") != seeded["ams-1"]
	})
	second, _ := clonePush(t, gitURL, "podinfo 6.6.1", map[string]string{"apps/podinfo/deployment.yaml": "kind: Deployment # 6.6.1\n"})
	firstID, secondID := workflows.RolloutID("demo", first), workflows.RolloutID("demo", second)
	if err := waitRollout(t, tc, firstID, 2*time.Minute); err != nil {
		t.Fatalf("superseded rollout: %v", err)
	}
	st, err := fw.Status(context.Background(), firstID)
	if err != nil || st.State != rollout.StateSuperseded || !strings.Contains(st.Reason, "superseded by "+rollout.Short(second)) {
		t.Fatalf("first rollout: %v %s %q", err, st.State, st.Reason)
	}
	// Never half-done: every site the first rollout promoted has a verdict.
	for _, w := range st.Waves {
		for _, s := range w.Sites {
			if s.Promoted && s.Verdict != rollout.VerdictHealthy {
				t.Errorf("superseded rollout left site %s %s", s.Name, s.Verdict)
			}
		}
	}
	if err := waitRollout(t, tc, secondID, 3*time.Minute); err != nil {
		t.Fatalf("second rollout: %v", err)
	}
	saveHistory(t, tc, firstID, "rollout-superseded")
	saveHistory(t, tc, workflows.FleetID("demo"), "fleet-supersede")
	for _, s := range devSites {
		if tree("refs/heads/sites/"+s) != tree(second) {
			t.Errorf("site %s is not on the second commit", s)
		}
		// The first commit reached the canary at most: later sites went straight to the second.
		log := git(t, bare, "log", "--format=%(trailers:key=Fleetwave-Source,valueonly)", "refs/heads/sites/"+s)
		if s != "ams-1" && strings.Contains(log, first) {
			t.Errorf("site %s got the superseded commit", s)
		}
	}
	out, err := fleetwaveCLI(t, bin, temporal, "list", "--state", "Superseded", "-o", "json")
	list, jerr := listItems[workflows.Summary](out)
	if err != nil || jerr != nil || len(list) != 1 || list[0].Rollout != firstID {
		t.Errorf("list --state Superseded: %v: %s", err, out)
	}
}
