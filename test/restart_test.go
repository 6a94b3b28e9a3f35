//go:build e2e

package test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/fleetwave/fleetwave/gitops/gittest"
	"github.com/fleetwave/fleetwave/internal/devtemporal"
	"github.com/fleetwave/fleetwave/rollout"
	"github.com/fleetwave/fleetwave/workflows"
)

// TestTemporalRestart (R2): the Temporal server, with its database on disk, is stopped and
// started again twice in one rollout: while the canary bakes, and while the next wave waits for
// its approval. The worker reconnects on its own, the rollout resumes where it stood, the
// approval given after the restart counts, and every site gets exactly one promotion commit.
func TestTemporalRestart(t *testing.T) {
	bin := buildFleetwave(t)
	port, err := devtemporal.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	opts := devtemporal.Options{Port: port, DBFile: filepath.Join(t.TempDir(), "temporal.db"), SearchAttributes: workflows.SearchAttributes, Headless: true}
	ts, err := devtemporal.Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ts.Stop() })
	restart := func() {
		t.Helper()
		ts.Stop()
		if ts, err = devtemporal.Start(context.Background(), opts); err != nil {
			t.Fatalf("restart temporal: %v", err)
		}
	}

	withApproval := strings.Replace(plan, "{name: eu, selector: {region: eu}, maxParallel: 1, bake: 2s}",
		"{name: eu, selector: {region: eu}, maxParallel: 1, bake: 2s, approval: {approvers: [U0APPROVER], timeout: 1h}}", 1)
	withApproval = strings.Replace(withApproval, "bake: 2s}", "bake: 8s}", 1) // the canary
	if !strings.Contains(withApproval, "approvers: [U0APPROVER]") || !strings.Contains(withApproval, "bake: 8s}") {
		t.Fatal("plan edit did not apply")
	}
	files := faultPlan("")
	files["fleetwave.yaml"] = withApproval
	gs := gittest.NewServer(t, "fleet", files, siteBranches()...)
	commit := gs.CommitOn(t, "main", "app v2, across restarts", map[string]string{"apps/app.yaml": "version: 2\n"})
	startServe(t, bin, ts.Address, gs.URL, nil)

	id := workflows.RolloutID("demo", commit)
	if out, err := fleetwaveCLI(t, bin, ts.Address, "start", "--fleet", "demo", commit); err != nil || out != id {
		t.Fatalf("fleetwave start: %v: %s", err, out)
	}
	status := func() rollout.Status {
		tc, err := client.Dial(client.Options{HostPort: ts.Address, Logger: quietLog{}, DataConverter: workflows.DataConverter(), FailureConverter: workflows.FailureConverter()})
		if err != nil {
			return rollout.Status{}
		}
		defer tc.Close()
		st, _ := workflows.NewClient(tc, "").Status(context.Background(), id)
		return st
	}
	waitFor(t, "the canary to bake", func() bool {
		st := status()
		return len(st.Waves) > 0 && st.Waves[0].State == rollout.StateBaking
	})
	restart()
	waitFor(t, "wave eu to wait for its approval after the restart", func() bool { return status().State == rollout.StateApproval })
	restart()
	// The worker's pollers reconnect on their own; the vote goes through the new server.
	waitFor(t, "the approval to be taken after the second restart", func() bool {
		out, err := fleetwaveCLI(t, bin, ts.Address, "approve", id, "--as", "U0APPROVER")
		if err != nil {
			t.Logf("approve: %v: %s", err, out)
		}
		return err == nil
	})
	tc := dialTemporal(t, ts.Address)
	if err := waitRollout(t, tc, id, 3*time.Minute); err != nil {
		t.Fatalf("rollout across restarts: %v", err)
	}
	for _, s := range sites {
		got := git(t, gs.Dir, "log", "--format=%s", gs.Seed+"..sites/"+s)
		if want := "Promote " + rollout.Short(commit) + " to " + s + ": app v2, across restarts"; got != want {
			t.Errorf("git log sites/%s:\n%s\nwant exactly one promotion:\n%s", s, got, want)
		}
	}
	if st := statusJSON(t, bin, ts.Address, id); st.Waves[1].Approval == nil || st.Waves[1].Approval.Outcome != rollout.ApprovalApproved {
		t.Errorf("eu approval after the restarts: %+v", st.Waves[1].Approval)
	}
}
