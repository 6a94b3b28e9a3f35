package workflows

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// TestReplayRecordedHistories replays every history recorded from a real Temporal server
// (`make record-histories`) against the current workflow code. A change that would break
// running rollouts fails here: guard it with workflow.GetVersion and keep the old history.
func TestReplayRecordedHistories(t *testing.T) {
	files, err := filepath.Glob("testdata/histories/*.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 8 {
		t.Fatalf("found %d recorded histories, want at least 8 (rollouts succeeded, reverted, paused, rolled back and superseded; waves; the fleet)", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			id, err := os.ReadFile(strings.TrimSuffix(f, ".json") + ".id")
			if err != nil {
				t.Fatalf("workflow ID of %s: %v", f, err)
			}
			in, err := os.Open(f)
			if err != nil {
				t.Fatal(err)
			}
			defer in.Close()
			h, err := client.HistoryFromJSON(in, client.HistoryJSONOptions{})
			if err != nil {
				t.Fatalf("read %s: %v", f, err)
			}
			r, err := worker.NewWorkflowReplayerWithOptions(worker.WorkflowReplayerOptions{DataConverter: DataConverter(), FailureConverter: FailureConverter()})
			if err != nil {
				t.Fatal(err)
			}
			r.RegisterWorkflow(Fleet)
			r.RegisterWorkflow(Rollout)
			r.RegisterWorkflow(Wave)
			r.RegisterWorkflow(Watch)
			r.RegisterWorkflow(CatchUp)
			err = r.ReplayWorkflowHistoryWithOptions(nil, h, worker.ReplayWorkflowHistoryOptions{
				OriginalExecution: workflow.Execution{ID: strings.TrimSpace(string(id)), RunID: "replay"},
			})
			if err != nil {
				t.Errorf("replay %s: %v", f, err)
			}
		})
	}
}
