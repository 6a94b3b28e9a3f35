//go:build e2e

package test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	enums "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/fleetwave/fleetwave/gitops/gittest"
	"github.com/fleetwave/fleetwave/internal/devtemporal"
	"github.com/fleetwave/fleetwave/rollout"
	"github.com/fleetwave/fleetwave/test/testenv"
	"github.com/fleetwave/fleetwave/workflows"
)

// TestLongBakeContinuesAsNew: on a real Temporal server that suggests continue-as-new after 40
// events, a canary baking 40 health rounds continues as new several times. Each new run still
// reports to the rollout, the bake lasts exactly its time, and the rollout succeeds.
func TestLongBakeContinuesAsNew(t *testing.T) {
	bin := buildFleetwave(t)
	tp := testenv.StartTemporalWith(t, devtemporal.Options{DynamicConfig: []string{"limit.historyCount.suggestContinueAsNew=40"}})
	gs := gittest.NewServer(t, "fleet", faultPlan(""), siteBranches()...)
	long := gs.CommitOn(t, "main", "app v2, a 20s canary bake", map[string]string{
		"apps/app.yaml": "version: 2\n", "fleetwave.yaml": strings.Replace(plan, "bake: 2s}", "bake: 20s}", 1)})
	startServe(t, bin, tp.Address, gs.URL, nil)

	id := workflows.RolloutID("demo", long)
	if out, err := fleetwaveCLI(t, bin, tp.Address, "start", "--fleet", "demo", long); err != nil || out != id {
		t.Fatalf("fleetwave start: %v: %s", err, out)
	}
	tc := dialTemporal(t, tp.Address)
	if err := waitRollout(t, tc, id, 3*time.Minute); err != nil {
		t.Fatalf("rollout: %v", err)
	}

	canary := workflows.WaveID(id, "canary")
	ctx := context.Background()
	resp, err := tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: fmt.Sprintf("WorkflowId = %q", canary)})
	if err != nil {
		t.Fatal(err)
	}
	continued, first, firstAt := 0, "", time.Time{}
	for _, e := range resp.Executions {
		if e.GetStatus() == enums.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW {
			continued++
			if first == "" || e.GetStartTime().AsTime().Before(firstAt) {
				first, firstAt = e.GetExecution().GetRunId(), e.GetStartTime().AsTime()
			}
		}
	}
	if continued < 2 || len(resp.Executions) != continued+1 {
		t.Errorf("canary wave: %d runs, %d continued as new; want at least 2 continued and one more", len(resp.Executions), continued)
	}
	// The last run is still the rollout's child: it reported to it and the rollout waited for it.
	d, err := tc.DescribeWorkflow(ctx, canary, "")
	if err != nil {
		t.Fatal(err)
	}
	if p := d.RawResponse.GetWorkflowExecutionInfo().GetParentExecution(); p.GetWorkflowId() != id {
		t.Errorf("last canary run's parent %v, want %s", p, id)
	}
	st := statusJSON(t, bin, tp.Address, id)
	w := st.Waves[0]
	if st.State != rollout.StateSucceeded || w.State != rollout.StateSucceeded || w.Sites[0].Verdict != rollout.VerdictHealthy {
		t.Fatalf("status %s, canary %s, ams-1 %s", st.State, w.State, w.Sites[0].Verdict)
	}
	if bake := w.BakeUntil.Sub(w.ConvergedAt); bake != 20*time.Second || w.FinishedAt.Before(w.BakeUntil) {
		t.Errorf("canary baked from %s until %s (%s), finished %s", w.ConvergedAt, w.BakeUntil, bake, w.FinishedAt)
	}
	saveHistory(t, tc, canary, "wave-continued")
	saveHistoryRun(t, tc, canary, first, "wave-continuing")
}
