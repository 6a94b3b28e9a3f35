//go:build e2e

package test

import (
	"context"
	"errors"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/fleetwave/fleetwave/gitops/gittest"
	"github.com/fleetwave/fleetwave/rollout"
	"github.com/fleetwave/fleetwave/test/testenv"
	"github.com/fleetwave/fleetwave/workflows"
)

// TestUnmergedCommitsNeverShip: a commit pushed only to a branch "side", never merged to main,
// is refused whichever way it comes: `fleetwave start` (the fleet's commit signal) says why and
// starts no rollout; a Rollout workflow started by hand in Temporal fails before writing
// anything. No site branch moves (the git CLI checks). Once merged (a fast-forward, the same
// commit), it rolls out.
func TestUnmergedCommitsNeverShip(t *testing.T) {
	bin := buildFleetwave(t)
	tp := testenv.StartTemporal(t)
	gs := gittest.NewServer(t, "fleet", faultPlan(""), siteBranches()...)
	git(t, gs.Dir, "branch", "side", "main")
	side := gs.CommitOn(t, "side", "unreviewed change", map[string]string{"apps/app.yaml": "version: 666\n"})
	heads := map[string]string{}
	for _, s := range sites {
		heads[s] = gs.Head(t, "sites/"+s)
	}
	startServe(t, bin, tp.Address, gs.URL, nil)
	tc := dialTemporal(t, tp.Address)

	out, err := fleetwaveCLI(t, bin, tp.Address, "start", "--fleet", "demo", "--wait", "--timeout", "2m", side)
	if err == nil || !strings.Contains(out, "refused by fleet demo: commit "+rollout.Short(side)+" is not on the source branch main") {
		t.Fatalf("fleetwave start of an unmerged commit: %v:\n%s\nwant refused, naming the source branch", err, out)
	}
	id := workflows.RolloutID("demo", side)
	var nf *serviceerror.NotFound
	if _, err := tc.DescribeWorkflowExecution(context.Background(), id, ""); !errors.As(err, &nf) {
		t.Errorf("rollout %s: %v, want no such workflow", id, err)
	}

	// Started by hand, past the coordinator: the plan is never loaded.
	run, err := tc.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{ID: "rollout/demo/by-hand", TaskQueue: workflows.TaskQueue("demo")},
		"Rollout", workflows.RolloutInput{Fleet: "demo", Commit: side})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := run.Get(ctx, nil); err == nil || !strings.Contains(err.Error(), "is not on the source branch main") {
		t.Errorf("a Rollout started by hand for an unmerged commit: %v, want it to fail, naming the source branch", err)
	}
	for _, s := range sites {
		if got := gs.Head(t, "sites/"+s); got != heads[s] {
			t.Errorf("sites/%s moved to %s: an unmerged commit was promoted", s, got)
		}
	}

	// Merged: the same commit is now on main, and rolls out.
	git(t, gs.Dir, "update-ref", "refs/heads/main", side)
	if out, err := fleetwaveCLI(t, bin, tp.Address, "start", "--fleet", "demo", side); err != nil || out != id {
		t.Fatalf("fleetwave start once merged: %v: %s", err, out)
	}
	if err := waitRollout(t, tc, id, 3*time.Minute); err != nil {
		t.Fatalf("the merged commit's rollout: %v", err)
	}
	tree := git(t, gs.Dir, "rev-parse", side+"^{tree}")
	for _, s := range sites {
		if got := git(t, gs.Dir, "rev-parse", "sites/"+s+"^{tree}"); got != tree {
			t.Errorf("site %s is not on the merged commit", s)
		}
	}
}

// TestOneRolloutPerFleet: the coordinator is terminated while a canary bakes (as one would to
// change --poll). A rollout started by hand meanwhile waits for the running one instead of
// promoting beside it. The next push reaches a new coordinator, which adopts the running
// rollout (the next commit's plan queues it behind) and rolls out after it: the git CLI sees
// the next promotion land only once the first rollout closed. Terminated again, the coordinator
// recovers the last success from Temporal, so an older commit does not ship.
func TestOneRolloutPerFleet(t *testing.T) {
	bin := buildFleetwave(t)
	tp := testenv.StartTemporal(t)
	gs := gittest.NewServer(t, "fleet", faultPlan(""), siteBranches()...)
	older := gs.CommitOn(t, "main", "app v2, never rolled out", map[string]string{"apps/app.yaml": "version: 2\n"})
	slow := strings.Replace(plan, "bake: 2s}", "bake: 20s}", 1)
	a := gs.CommitOn(t, "main", "app v3, slow canary", map[string]string{"apps/app.yaml": "version: 3\n", "fleetwave.yaml": slow})
	startServe(t, bin, tp.Address, gs.URL, nil)
	tc := dialTemporal(t, tp.Address)
	fw := workflows.NewClient(tc, "")
	ctx := context.Background()

	first := workflows.RolloutID("demo", a)
	if out, err := fleetwaveCLI(t, bin, tp.Address, "start", "--fleet", "demo", a); err != nil {
		t.Fatalf("fleetwave start: %v: %s", err, out)
	}
	waitFor(t, "the first rollout's canary to bake", func() bool {
		st, err := fw.Status(ctx, first)
		return err == nil && st.Waves[0].State == rollout.StateBaking
	})
	if err := tc.TerminateWorkflow(ctx, workflows.FleetID("demo"), "", "to change --poll"); err != nil {
		t.Fatal(err)
	}

	b := gs.CommitOn(t, "main", "app v4", map[string]string{"apps/app.yaml": "version: 4\n", "fleetwave.yaml": plan + "  onNewCommit: queue\n"})
	if _, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "rollout/demo/by-hand", TaskQueue: workflows.TaskQueue("demo")},
		"Rollout", workflows.RolloutInput{Fleet: "demo", Commit: b}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the rollout started by hand to wait for the running one", func() bool {
		st, err := fw.Status(ctx, "rollout/demo/by-hand")
		return err == nil && len(st.Waves) > 0 && st.Waves[0].State == rollout.StateWaiting &&
			strings.Contains(st.Waves[0].Message, "waiting for rollout "+first+" of the fleet to end")
	})
	if got := gs.Head(t, "sites/ams-1"); !strings.Contains(git(t, gs.Dir, "log", "-1", "--format=%s", got), rollout.Short(a)) {
		t.Errorf("sites/ams-1 is at %s, want the first rollout's promotion", got)
	}
	if err := tc.TerminateWorkflow(ctx, "rollout/demo/by-hand", "", "done looking"); err != nil {
		t.Fatal(err)
	}

	if out, err := fleetwaveCLI(t, bin, tp.Address, "start", "--fleet", "demo", b); err != nil {
		t.Fatalf("fleetwave start: %v: %s", err, out)
	}
	fleet := func() workflows.FleetState {
		v, err := tc.QueryWorkflow(ctx, workflows.FleetID("demo"), "", workflows.QueryFleet)
		var fs workflows.FleetState
		if err == nil {
			_ = v.Get(&fs)
		}
		return fs
	}
	waitFor(t, "the new coordinator to adopt the running rollout, the next commit queued behind it", func() bool {
		fs := fleet()
		return fs.Adopted && fs.Running == first && slices.Equal(fs.Queue, []string{b})
	})
	second := workflows.RolloutID("demo", b)
	if err := waitRollout(t, tc, second, 3*time.Minute); err != nil {
		t.Fatalf("the next rollout: %v", err)
	}
	desc, err := tc.DescribeWorkflowExecution(ctx, first, "")
	if err != nil {
		t.Fatal(err)
	}
	closed := desc.GetWorkflowExecutionInfo().GetCloseTime().AsTime()
	// The next rollout's promotion of the canary: committed once the first rollout closed.
	promoted := git(t, gs.Dir, "log", "-1", "--format=%ct", "--grep", "Promote "+rollout.Short(b), "sites/ams-1")
	if at := time.Unix(atoi(t, promoted), 0); at.Before(closed.Truncate(time.Second)) {
		t.Errorf("%s promoted ams-1 at %s, before %s closed at %s: two rollouts promoted at once", second, at, first, closed)
	}
	if st := statusJSON(t, bin, tp.Address, first); st.State != rollout.StateSucceeded {
		t.Errorf("the adopted rollout ended %s, want Succeeded, the next commit queued behind it", st.State)
	}
	saveHistory(t, tc, second, "rollout-alone")
	saveHistory(t, tc, workflows.FleetID("demo"), "fleet-adopted")

	if err := tc.TerminateWorkflow(ctx, workflows.FleetID("demo"), "", "again"); err != nil {
		t.Fatal(err)
	}
	if out, err := fleetwaveCLI(t, bin, tp.Address, "start", "--fleet", "demo", older); err != nil {
		t.Fatalf("fleetwave start: %v: %s", err, out)
	}
	waitFor(t, "the new coordinator to take the older commit in", func() bool {
		fs := fleet()
		return fs.Adopted && fs.LastSucceeded == b && slices.Contains(fs.Seen, older)
	})
	var nf *serviceerror.NotFound
	if _, err := tc.DescribeWorkflowExecution(ctx, workflows.RolloutID("demo", older), ""); !errors.As(err, &nf) {
		t.Errorf("the older commit's rollout: %v, want none: the last success was lost with the coordinator", err)
	}
}

func atoi(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return n
}

// TestRollbackAfterTheEnd: the eu wave's approval is rejected after the canary was promoted,
// and the rollout fails. `fleetwave rollback` still works on it: a Rollback workflow reverts
// the canary through a real git revert (the git CLI sees the tree from before), and a second
// rollback finds it already reverted and writes nothing.
func TestRollbackAfterTheEnd(t *testing.T) {
	bin := buildFleetwave(t)
	tp := testenv.StartTemporal(t)
	gs := gittest.NewServer(t, "fleet", faultPlan(""), siteBranches()...)
	approval := strings.Replace(plan, "{name: eu, selector: {region: eu}, maxParallel: 1, bake: 2s}",
		"{name: eu, selector: {region: eu}, maxParallel: 1, bake: 2s, approval: {approvers: [U0LEAD], timeout: 1h}}", 1)
	if approval == plan {
		t.Fatal("the test plan has no eu wave to give an approval")
	}
	before := gs.Head(t, "sites/ams-1")
	commit := gs.CommitOn(t, "main", "app v2, approval", map[string]string{"apps/app.yaml": "version: 2\n", "fleetwave.yaml": approval})
	startServe(t, bin, tp.Address, gs.URL, nil, "--evidence-branch", "evidence")
	tc := dialTemporal(t, tp.Address)
	fw := workflows.NewClient(tc, "")
	ctx := context.Background()
	id := workflows.RolloutID("demo", commit)
	if out, err := fleetwaveCLI(t, bin, tp.Address, "start", "--fleet", "demo", commit); err != nil {
		t.Fatalf("fleetwave start: %v: %s", err, out)
	}
	waitFor(t, "eu to wait for approval", func() bool {
		st, err := fw.Status(ctx, id)
		return err == nil && len(st.Waves) > 1 && st.Waves[1].State == rollout.StateApproval
	})
	if out, err := fleetwaveCLI(t, bin, tp.Address, "reject", id, "--as", "U0LEAD", "--comment", "not today"); err != nil {
		t.Fatalf("fleetwave reject: %v: %s", err, out)
	}
	if err := waitRollout(t, tc, id, time.Minute); err == nil {
		t.Fatal("the rejected rollout succeeded")
	}
	// The status names who sent the CLI vote (its Temporal identity), beside whom it names.
	if out, _ := fleetwaveCLI(t, bin, tp.Address, "status", id); !regexp.MustCompile(`rejected by U0LEAD via cli \(sent by \S+\): not today`).MatchString(out) {
		t.Errorf("fleetwave status:\n%s\nwant the vote with the identity that sent it", out)
	}
	if git(t, gs.Dir, "rev-parse", "sites/ams-1^{tree}") != git(t, gs.Dir, "rev-parse", commit+"^{tree}") {
		t.Fatal("the canary does not run the commit: nothing to roll back")
	}

	out, err := fleetwaveCLI(t, bin, tp.Address, "rollback", id, "--as", "U0LEAD", "--reason", "the canary misbehaves")
	if err != nil || !strings.Contains(out, "workflow "+workflows.RollbackID(id)+" reverts every site it promoted") {
		t.Fatalf("fleetwave rollback of an ended rollout: %v: %s", err, out)
	}
	var res workflows.RollbackResult
	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := tc.GetWorkflow(rctx, workflows.RollbackID(id), "").Get(rctx, &res); err != nil {
		t.Fatalf("the rollback: %v", err)
	}
	if !slices.Equal(res.Reverted, []string{"ams-1"}) {
		t.Errorf("rollback result %+v, want ams-1 reverted", res)
	}
	if got, want := git(t, gs.Dir, "rev-parse", "sites/ams-1^{tree}"), git(t, gs.Dir, "rev-parse", before+"^{tree}"); got != want {
		t.Errorf("sites/ams-1 runs tree %s after the rollback, want the tree from before the promotion %s", got, want)
	}
	subject := git(t, gs.Dir, "log", "-1", "--format=%s%n%b", "sites/ams-1")
	if !strings.HasPrefix(subject, `Revert "Promote `+rollout.Short(commit)) || !strings.Contains(subject, "rolled back by U0LEAD after the rollout ended (Failed): the canary misbehaves") {
		t.Errorf("sites/ams-1's head:\n%s\nwant a revert of the promotion saying why", subject)
	}
	head := gs.Head(t, "sites/ams-1")
	// Its evidence, beside the rollout's report on the evidence branch: who, why, the revert.
	files := git(t, gs.Dir, "ls-tree", "-r", "--name-only", "evidence")
	var md string
	for _, f := range strings.Fields(files) {
		if strings.Contains(f, "-"+rollout.Short(commit)+"-rollback-") && strings.HasSuffix(f, ".md") {
			md = git(t, gs.Dir, "show", "evidence:"+f)
		}
	}
	for _, want := range []string{"# Rollback of " + id, "| Asked by | U0LEAD |", "| Reason | the canary misbehaves |", "- ams-1: revert `" + head + "`"} {
		if !strings.Contains(md, want) {
			t.Errorf("the rollback's evidence (evidence branch: %s):\n%s\nwant %q", files, md, want)
		}
	}

	// Again: a second rollback workflow (the first ended) finds the revert and writes nothing.
	if out, err := fleetwaveCLI(t, bin, tp.Address, "rollback", id, "--as", "U0LEAD"); err != nil {
		t.Fatalf("second rollback: %v: %s", err, out)
	}
	var again workflows.RollbackResult
	if err := tc.GetWorkflow(rctx, workflows.RollbackID(id), "").Get(rctx, &again); err != nil {
		t.Fatalf("the second rollback: %v", err)
	}
	if len(again.Reverted) != 0 || !slices.Contains(again.Skipped, "ams-1: already reverted") || gs.Head(t, "sites/ams-1") != head {
		t.Errorf("second rollback %+v, head moved %v", again, gs.Head(t, "sites/ams-1") != head)
	}
}

// TestMissingSiteBranchIsOneSite: sfo-1's branch does not exist. Its wave may lose one site
// (maxFailures: 1): the push of the others lands, sfo-1 is Degraded saying how to create its
// branch, and the rollout succeeds; the git CLI sees every other site on the commit.
func TestMissingSiteBranchIsOneSite(t *testing.T) {
	bin := buildFleetwave(t)
	tp := testenv.StartTemporal(t)
	var branches []string
	for _, b := range siteBranches() {
		if b != "sites/sfo-1" {
			branches = append(branches, b)
		}
	}
	gs := gittest.NewServer(t, "fleet", faultPlan(""), branches...)
	budget := strings.Replace(plan, "{name: fleet, bake: 1s}", "{name: fleet, bake: 1s, maxFailures: 1}", 1)
	commit := gs.CommitOn(t, "main", "app v2", map[string]string{"apps/app.yaml": "version: 2\n", "fleetwave.yaml": budget})
	startServe(t, bin, tp.Address, gs.URL, nil)
	tc := dialTemporal(t, tp.Address)
	id := workflows.RolloutID("demo", commit)
	if out, err := fleetwaveCLI(t, bin, tp.Address, "start", "--fleet", "demo", commit); err != nil {
		t.Fatalf("fleetwave start: %v: %s", err, out)
	}
	if err := waitRollout(t, tc, id, 2*time.Minute); err != nil {
		t.Fatalf("rollout failed although sfo-1 was within the failure budget: %v", err)
	}
	st := statusJSON(t, bin, tp.Address, id)
	for _, w := range st.Waves {
		for _, s := range w.Sites {
			if s.Name == "sfo-1" {
				if s.Verdict != rollout.VerdictDegraded || !strings.Contains(s.Message, "site branch sites/sfo-1 does not exist") {
					t.Errorf("sfo-1: %s %q", s.Verdict, s.Message)
				}
				continue
			}
			if got := git(t, gs.Dir, "rev-parse", "sites/"+s.Name+"^{tree}"); got != git(t, gs.Dir, "rev-parse", commit+"^{tree}") {
				t.Errorf("site %s is not on the commit", s.Name)
			}
		}
	}
}
