package activities

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/fleetwave/fleetwave/rollout"
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
	if in.Attribute != "" {
		res.Value = keyword(info, in.Attribute)
	}
	return res, nil
}

// EarlierInput asks for the rollouts of a fleet that still run and started before Self (at
// Started; on a tie, those whose ID sorts first), by the keyword search attribute Attribute
// (FleetwaveFleet), which every rollout sets on its first workflow task.
type EarlierInput struct {
	Fleet     string
	Attribute string
	Self      string
	Started   time.Time
	// StateAttr (FleetwaveState) and Ended: a rollout whose state is one of Ended has
	// finished its runbook (it may still be writing its evidence) and promotes nothing more.
	StateAttr string   `json:",omitempty"`
	Ended     []string `json:",omitempty"`
	// CatchUps, when set, is the workflow type of catch-ups: the running catch-ups of the
	// fleet are listed too (EarlierResult.CatchUps), and each that has not ended is sent Signal
	// with Commit (a newer rollout supersedes them).
	CatchUps string `json:",omitempty"`
	Signal   string `json:",omitempty"`
	Commit   string `json:",omitempty"`
	// Signalled are catch-ups already sent Signal: listed, not signalled again.
	Signalled []string `json:",omitempty"`
	// Any lists every running rollout of the fleet, whenever it started (a catch-up gives way
	// to all of them), instead of those that started before Self.
	Any bool `json:",omitempty"`
}

// EarlierResult lists the earlier rollouts that still run, oldest first, and the fleet's
// catch-ups that still run (with EarlierInput.CatchUps).
type EarlierResult struct {
	Rollouts []string `json:",omitempty"`
	CatchUps []string `json:",omitempty"`
}

// Earlier lists the running Rollout workflows of the fleet that started before in.Self, from
// Temporal's visibility store: a rollout promotes only once none does, so that one rollout of
// a fleet promotes at a time whatever happened to its coordinator.
func (e *Executions) Earlier(ctx context.Context, in EarlierInput) (EarlierResult, error) {
	query := runningRollouts(in.Attribute, in.Fleet)
	if in.StateAttr != "" && len(in.Ended) > 0 {
		query += fmt.Sprintf(" AND %s NOT IN ('%s')", in.StateAttr, strings.Join(in.Ended, "', '"))
	}
	type earlier struct {
		id      string
		started time.Time
	}
	var found []earlier
	err := e.list(ctx, query, func(x *workflowpb.WorkflowExecutionInfo) {
		id, started := x.GetExecution().GetWorkflowId(), x.GetStartTime().AsTime()
		if id != in.Self && (in.Any || started.Before(in.Started) || (started.Equal(in.Started) && id < in.Self)) {
			found = append(found, earlier{id, started})
		}
	})
	if err != nil {
		return EarlierResult{}, fmt.Errorf("list the running rollouts of fleet %s: %w", in.Fleet, err)
	}
	slices.SortFunc(found, func(a, b earlier) int { return cmp.Or(a.started.Compare(b.started), strings.Compare(a.id, b.id)) })
	var out EarlierResult
	for _, f := range found {
		out.Rollouts = append(out.Rollouts, f.id)
	}
	if in.CatchUps == "" {
		return out, nil
	}
	var catchUps []string
	err = e.list(ctx, fmt.Sprintf("WorkflowType = %s AND ExecutionStatus = 'Running' AND %s = %s", quote(in.CatchUps), in.Attribute, quote(in.Fleet)),
		func(x *workflowpb.WorkflowExecutionInfo) {
			id := x.GetExecution().GetWorkflowId()
			out.CatchUps = append(out.CatchUps, id)
			if (in.StateAttr == "" || !slices.Contains(in.Ended, keyword(x, in.StateAttr))) && !slices.Contains(in.Signalled, id) {
				catchUps = append(catchUps, id)
			}
		})
	if err != nil {
		return EarlierResult{}, fmt.Errorf("list the running catch-ups of fleet %s: %w", in.Fleet, err)
	}
	slices.Sort(out.CatchUps)
	for _, id := range catchUps {
		err := e.Client.SignalWorkflow(ctx, id, "", in.Signal, map[string]string{"Commit": in.Commit})
		var notFound *serviceerror.NotFound
		if err != nil && !errors.As(err, &notFound) {
			return EarlierResult{}, fmt.Errorf("supersede catch-up %s: %w", id, err)
		}
	}
	return out, nil
}

// AdoptInput names a fleet whose coordinator starts afresh, and the keyword search attributes
// rollouts carry (FleetwaveFleet, FleetwaveCommit, FleetwaveState).
type AdoptInput struct {
	Fleet                     string
	FleetAttr, CommitAttr     string
	StateAttr, SucceededState string
}

// AdoptResult is what a new coordinator takes over: the oldest rollout of the fleet still
// running (with its commit), and the commit of the last one that succeeded.
type AdoptResult struct {
	Running       string `json:",omitempty"`
	RunningCommit string `json:",omitempty"`
	LastSucceeded string `json:",omitempty"`
}

// Adopt reads, from Temporal's visibility store, what a coordinator that starts afresh (its
// workflow terminated, reset, or its history lost) must know so that no second rollout
// promotes beside a running one and no commit already rolled out ships again.
func (e *Executions) Adopt(ctx context.Context, in AdoptInput) (AdoptResult, error) {
	var res AdoptResult
	var oldest time.Time
	err := e.list(ctx, runningRollouts(in.FleetAttr, in.Fleet),
		func(x *workflowpb.WorkflowExecutionInfo) {
			if started := x.GetStartTime().AsTime(); res.Running == "" || started.Before(oldest) {
				res.Running, oldest = x.GetExecution().GetWorkflowId(), started
				res.RunningCommit = keyword(x, in.CommitAttr)
			}
		})
	if err != nil {
		return AdoptResult{}, err
	}
	var latest time.Time
	err = e.list(ctx, fmt.Sprintf("WorkflowType = 'Rollout' AND ExecutionStatus = 'Completed' AND %s = %s AND %s = %s",
		in.FleetAttr, quote(in.Fleet), in.StateAttr, quote(in.SucceededState)),
		func(x *workflowpb.WorkflowExecutionInfo) {
			if closed := x.GetCloseTime().AsTime(); res.LastSucceeded == "" || closed.After(latest) {
				if c := keyword(x, in.CommitAttr); c != "" {
					res.LastSucceeded, latest = c, closed
				}
			}
		})
	if err != nil {
		return AdoptResult{}, err
	}
	return res, nil
}

// runningRollouts is the visibility query of the fleet's running Rollout workflows, by its
// keyword attribute attr.
func runningRollouts(attr, fleet string) string {
	return fmt.Sprintf("WorkflowType = 'Rollout' AND ExecutionStatus = 'Running' AND %s = %s", attr, quote(fleet))
}

// quote makes s a string literal of a visibility query.
func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// list calls each for every execution the visibility query matches, page by page.
func (e *Executions) list(ctx context.Context, query string, each func(*workflowpb.WorkflowExecutionInfo)) error {
	var token []byte
	for {
		resp, err := e.Client.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: query, PageSize: 100, NextPageToken: token})
		if err != nil {
			return fmt.Errorf("list workflows (%s): %w", query, err)
		}
		for _, x := range resp.GetExecutions() {
			each(x)
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			return nil
		}
	}
}

// keyword is the value of an execution's keyword search attribute, "" when unset.
func keyword(x *workflowpb.WorkflowExecutionInfo, attr string) string {
	var v string
	if p := x.GetSearchAttributes().GetIndexedFields()[attr]; p != nil {
		_ = converter.GetDefaultDataConverter().FromPayload(p, &v)
	}
	return v
}

// EndedInput names a rollout that ended, and the query that returns its status.
type EndedInput struct {
	WorkflowID string
	Query      string
}

// Ended returns the status of a rollout that ended, from its status query (Temporal replays
// its history on a worker to answer). A rollout still running is refused, non-retryable: it
// takes the rollback control itself.
func (e *Executions) Ended(ctx context.Context, in EndedInput) (rollout.Status, error) {
	d, err := e.Client.DescribeWorkflow(ctx, in.WorkflowID, "")
	var notFound *serviceerror.NotFound
	switch {
	case errors.As(err, &notFound):
		return rollout.Status{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf("no rollout %s", in.WorkflowID), "NotFound", err)
	case err != nil:
		return rollout.Status{}, fmt.Errorf("describe %s: %w", in.WorkflowID, err)
	case d.RawResponse.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING:
		return rollout.Status{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("rollout %s is still running: send it the rollback control", in.WorkflowID), "Running", nil)
	}
	v, err := e.Client.QueryWorkflow(ctx, in.WorkflowID, "", in.Query)
	if err != nil {
		return rollout.Status{}, fmt.Errorf("query %s: %w", in.WorkflowID, err)
	}
	var st rollout.Status
	if err := v.Get(&st); err != nil {
		return rollout.Status{}, fmt.Errorf("decode the status of %s: %w", in.WorkflowID, err)
	}
	return st, nil
}

// LastRunsInput names catch-ups (workflow IDs) that a rollout superseded, and the state a
// superseded catch-up ends in.
type LastRunsInput struct {
	IDs        []string
	Superseded string
}

// LastRun is a catch-up's last run that ended superseded, with the input it started with
// (the JSON of workflows.CatchUpInput, decoded here: a workflow decodes no JSON itself).
type LastRun struct {
	ID    string
	Input CatchUpRun
}

// CatchUpRun is the input a catch-up ran with: the fields of workflows.CatchUpInput.
type CatchUpRun struct {
	Fleet, Commit, Site, Rollout string
	Since                        time.Time `json:",omitzero"`
	Started                      time.Time `json:",omitzero"`
	Channel                      string    `json:",omitempty"`
	Thread                       string    `json:",omitempty"`
}

// LastRunsResult lists the named workflows whose last run closed superseded.
type LastRunsResult struct {
	Superseded []LastRun `json:",omitempty"`
}

// LastRuns finds, of the named workflows, those whose last run closed in the Superseded state
// (and no later run started since), with the input of that run: a rollout that superseded
// catch-ups and then did not succeed starts them again. Payloads are decoded as fleetwave's
// data converter writes them (JSON, zlib-compressed when large).
func (e *Executions) LastRuns(ctx context.Context, in LastRunsInput) (LastRunsResult, error) {
	dc := converter.NewCodecDataConverter(converter.GetDefaultDataConverter(), converter.NewZlibCodec(converter.ZlibCodecOptions{}))
	var out LastRunsResult
	for _, id := range in.IDs {
		d, err := e.Client.DescribeWorkflow(ctx, id, "")
		var notFound *serviceerror.NotFound
		switch {
		case errors.As(err, &notFound):
			continue
		case err != nil:
			return out, fmt.Errorf("describe %s: %w", id, err)
		case d.RawResponse.GetWorkflowExecutionInfo().GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED:
			continue // running again, or closed some other way
		}
		runID := d.RawResponse.GetWorkflowExecutionInfo().GetExecution().GetRunId()
		var input, result *commonpb.Payloads
		it := e.Client.GetWorkflowHistory(ctx, id, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for it.HasNext() {
			ev, err := it.Next()
			if err != nil {
				return out, fmt.Errorf("read the history of %s: %w", id, err)
			}
			if a := ev.GetWorkflowExecutionStartedEventAttributes(); a != nil {
				input = a.GetInput()
			}
			if a := ev.GetWorkflowExecutionCompletedEventAttributes(); a != nil {
				result = a.GetResult()
			}
		}
		var res struct{ Status struct{ State string } }
		if result == nil || len(result.GetPayloads()) == 0 || dc.FromPayload(result.GetPayloads()[0], &res) != nil || res.Status.State != in.Superseded {
			continue
		}
		var run CatchUpRun
		if input == nil || len(input.GetPayloads()) == 0 {
			continue
		}
		if err := dc.FromPayload(input.GetPayloads()[0], &run); err != nil {
			return out, fmt.Errorf("decode the input of %s: %w", id, err)
		}
		out.Superseded = append(out.Superseded, LastRun{ID: id, Input: run})
	}
	return out, nil
}
