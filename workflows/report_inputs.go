package workflows

import (
	"errors"
	"fmt"
	"log/slog"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/fleetwave/fleetwave/activities"
	"github.com/fleetwave/fleetwave/internal/report"
	"github.com/fleetwave/fleetwave/rollout"
)

// policyInputs recovers the input of every policy decision in a rollout's history, in the
// order of their markers. The marker of a local activity records its result only, and the
// input is large (every earlier site's verdict), so the history does not hold it; replaying
// the history against the rollout's workflow code makes the same calls again, with the same
// arguments, which an interceptor reads. Replay is what CI checks of every recorded history,
// so the inputs are the ones the policies saw.
func policyInputs(exec report.Workflow, events []*historypb.HistoryEvent) (inputs []rollout.PolicyInput, err error) {
	// A running rollout's history may end in a workflow task not completed yet, which a
	// replay would run as a new one (local activities and all): replay up to that task only.
	end := len(events)
	for i := len(events) - 1; i >= 0 && events[i].GetEventType() != enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED; i-- {
		if events[i].GetEventType() == enumspb.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED {
			end = i
		}
	}
	if end < 3 {
		return nil, nil // the first task is not completed: no decision yet
	}
	capture := &policyCapture{}
	r, err := worker.NewWorkflowReplayerWithOptions(worker.WorkflowReplayerOptions{
		DataConverter:            DataConverter(),
		FailureConverter:         FailureConverter(),
		Interceptors:             []interceptor.WorkerInterceptor{capture},
		DisableDeadlockDetection: true, // a slow machine is no reason to lose the inputs
	})
	if err != nil {
		return nil, err
	}
	r.RegisterWorkflow(Rollout)
	defer func() {
		if p := recover(); p != nil {
			inputs, err = nil, fmt.Errorf("replay panicked: %v", p)
		}
	}()
	h := &historypb.History{Events: events[:end]}
	quiet := log.NewStructuredLogger(slog.New(slog.DiscardHandler))
	if err := r.ReplayWorkflowHistoryWithOptions(quiet, h, worker.ReplayWorkflowHistoryOptions{
		OriginalExecution: workflow.Execution{ID: exec.ID, RunID: exec.RunID},
	}); err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	if capture.err != nil {
		return nil, capture.err
	}
	return capture.inputs, nil
}

// policyCapture is a worker interceptor that records the request of every EvaluatePolicy
// local activity the workflow code starts.
type policyCapture struct {
	interceptor.WorkerInterceptorBase
	inputs []rollout.PolicyInput
	err    error
}

func (c *policyCapture) InterceptWorkflow(ctx workflow.Context, next interceptor.WorkflowInboundInterceptor) interceptor.WorkflowInboundInterceptor {
	return &policyInbound{WorkflowInboundInterceptorBase: interceptor.WorkflowInboundInterceptorBase{Next: next}, capture: c}
}

type policyInbound struct {
	interceptor.WorkflowInboundInterceptorBase
	capture *policyCapture
}

func (i *policyInbound) Init(outbound interceptor.WorkflowOutboundInterceptor) error {
	return i.Next.Init(&policyOutbound{WorkflowOutboundInterceptorBase: interceptor.WorkflowOutboundInterceptorBase{Next: outbound}, capture: i.capture})
}

type policyOutbound struct {
	interceptor.WorkflowOutboundInterceptorBase
	capture *policyCapture
}

func (o *policyOutbound) ExecuteLocalActivity(ctx workflow.Context, activityType string, args ...any) workflow.Future {
	if activityType == "EvaluatePolicy" {
		if req, ok := firstArg[activities.PolicyRequest](args); ok {
			o.capture.inputs = append(o.capture.inputs, req.Input)
		} else if o.capture.err == nil {
			o.capture.err = errors.New("EvaluatePolicy was called without a policy request")
		}
	}
	return o.Next.ExecuteLocalActivity(ctx, activityType, args...)
}

func firstArg[T any](args []any) (T, bool) {
	var zero T
	if len(args) == 0 {
		return zero, false
	}
	switch v := args[0].(type) {
	case T:
		return v, true
	case *T:
		if v != nil {
			return *v, true
		}
	}
	return zero, false
}
