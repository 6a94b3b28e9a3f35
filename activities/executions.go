package activities

import (
	"context"
	"errors"
	"fmt"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
)

// Executions runs the activity that asks Temporal about a workflow execution: the fleet's
// coordinator uses it to notice a rollout that closed without telling it (terminated, timed
// out, reset from outside).
type Executions struct {
	Client client.Client
}

// ExecutionInput names a workflow by ID (its latest run).
type ExecutionInput struct {
	WorkflowID string
	// Attribute names a keyword search attribute to read, if any (the fleet reads a rollout's
	// FleetwaveCommit).
	Attribute string `json:",omitempty"`
}

// ExecutionResult says whether the workflow still runs, and how it closed if not.
type ExecutionResult struct {
	Running bool
	// Status is Temporal's execution status: Running, Completed, Failed, Terminated,
	// TimedOut, Canceled, ContinuedAsNew; NotFound when no such workflow exists.
	Status string
	// Value is the Attribute's value, "" when unset.
	Value string `json:",omitempty"`
}

// Execution describes the latest run of a workflow.
func (e *Executions) Execution(ctx context.Context, in ExecutionInput) (ExecutionResult, error) {
	d, err := e.Client.DescribeWorkflow(ctx, in.WorkflowID, "")
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return ExecutionResult{Status: "NotFound"}, nil
	}
	if err != nil {
		return ExecutionResult{}, fmt.Errorf("describe workflow %s: %w", in.WorkflowID, err)
	}
	info := d.RawResponse.GetWorkflowExecutionInfo()
	res := ExecutionResult{
		Running: info.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING,
		Status:  info.GetStatus().String(),
	}
	if p := info.GetSearchAttributes().GetIndexedFields()[in.Attribute]; in.Attribute != "" && p != nil {
		_ = converter.GetDefaultDataConverter().FromPayload(p, &res.Value)
	}
	return res, nil
}
